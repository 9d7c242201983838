package watch

import (
	"cmp"
	"context"
	"slices"
)

// Rule says whether a waiter may proceed, judged against the mirror's
// state, or that it never will (an error, which ends its wait). A
// Waitlist's rule must be monotone in create-revision order: if a waiter
// may not proceed, no waiter that queued after it may either. Every FIFO
// rule is (a lock's "no older key in my lines", a semaphore's "what is
// ahead of me plus my own weight fits"), and it is what lets a change be
// judged by looking at the front of the list only.
type Rule func(v *View, w *Waiter) (bool, error)

// Waiter is one local waiter: its own key (created at Rev) and whatever
// its rule needs (Arg: the lines it must be first in, its weight).
type Waiter struct {
	Key string
	Rev int64
	Arg any

	ch   chan error
	done bool
}

// Waitlist is the process's waiters on one mirror under one rule, in
// create-revision order. After every change of the mirror it wakes the
// waiters at the front that the rule now lets through, and any waiter
// whose own key went; so a handoff costs one rule check, whatever the
// number of waiters.
type Waitlist struct {
	m     *Mirror
	rule  Rule
	order []*Waiter // ascending Rev; those before head, and done ones, are gone
	head  int
	dead  int // done waiters at or after head
	byKey map[string]*Waiter
}

// Waitlist returns the mirror's waitlist called name, made with rule on
// first use. Every caller of one name must pass the same rule.
func (m *Mirror) Waitlist(name string, rule Rule) *Waitlist {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.attached == nil {
		m.attached = map[string]*Waitlist{}
	}
	if wl, ok := m.attached[name]; ok {
		return wl
	}
	wl := &Waitlist{m: m, rule: rule, byKey: map[string]*Waiter{}}
	m.attached[name] = wl
	m.lis[&listener{fn: wl.changed}] = struct{}{}
	return wl
}

// Wait blocks until w may proceed (nil), its own key is gone (ErrGone),
// the mirror ends (its error) or ctx ends (ctx's error).
func (wl *Waitlist) Wait(ctx context.Context, w *Waiter) error {
	w.ch = make(chan error, 1)
	m := wl.m
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return err
	}
	if n := len(wl.order); n == 0 || wl.order[n-1].Rev <= w.Rev {
		wl.order = append(wl.order, w) // the usual case: the newest waiter
	} else {
		i, _ := slices.BinarySearchFunc(wl.order[wl.head:], w.Rev, func(x *Waiter, r int64) int { return cmp.Compare(x.Rev, r) })
		wl.order = slices.Insert(wl.order, wl.head+i, w)
	}
	wl.byKey[w.Key] = w
	if m.loaded {
		v := &View{m: m}
		wl.check(v, w)
		wl.front(v)
	}
	m.mu.Unlock()
	select {
	case err := <-w.ch:
		return err
	case <-ctx.Done():
		m.mu.Lock()
		wl.remove(w)
		m.mu.Unlock()
		select {
		case err := <-w.ch:
			if err == nil {
				// Let through at the very moment ctx ended: the caller
				// gives its key up either way, which is what a cancelled
				// wait promises.
				return ctx.Err()
			}
			return err
		default:
		}
		return ctx.Err()
	}
}

// changed is the waitlist's mirror listener. m.mu held.
func (wl *Waitlist) changed(v *View, c Change) {
	switch {
	case c.Err != nil:
		for _, w := range slices.Clone(wl.order[wl.head:]) {
			wl.wake(w, c.Err)
		}
		return
	case c.Reloaded:
		for _, w := range slices.Clone(wl.order[wl.head:]) {
			wl.check(v, w)
		}
	default:
		for _, ev := range c.Events {
			if w, ok := wl.byKey[string(ev.Kv.Key)]; ok {
				wl.check(v, w)
			}
		}
	}
	wl.front(v)
}

// check wakes w with ErrGone if the mirror, current past w's own create,
// no longer has its key.
func (wl *Waitlist) check(v *View, w *Waiter) {
	if v.Rev() < w.Rev {
		return
	}
	if e := v.Get(w.Key); e == nil || e.CreateRev != w.Rev {
		wl.wake(w, ErrGone)
	}
}

// front lets through the waiters at the front that the rule allows.
func (wl *Waitlist) front(v *View) {
	for wl.head < len(wl.order) {
		w := wl.order[wl.head]
		if w.done {
			wl.head++
			wl.dead--
			continue
		}
		if v.Rev() < w.Rev {
			break
		}
		ok, err := wl.rule(v, w)
		if err != nil {
			wl.wake(w, err)
			continue
		}
		if !ok {
			break
		}
		wl.wake(w, nil)
	}
	wl.compact()
}

// compact drops gone waiters once they are most of the list, so memory
// follows the live waiters, not every wait ever made.
func (wl *Waitlist) compact() {
	if gone := wl.head + wl.dead; len(wl.order) > 64 && gone*2 > len(wl.order) {
		live := slices.DeleteFunc(slices.Clone(wl.order[wl.head:]), func(w *Waiter) bool { return w.done })
		clear(wl.order)
		wl.order, wl.head, wl.dead = live, 0, 0
	}
}

func (wl *Waitlist) wake(w *Waiter, err error) {
	if w.done {
		return
	}
	wl.remove(w)
	w.ch <- err
}

func (wl *Waitlist) remove(w *Waiter) {
	if w.done {
		return
	}
	w.done = true
	wl.dead++
	delete(wl.byKey, w.Key)
	wl.compact()
}

// First is the rule of every FIFO line (a lock, an election in campaign
// order): a waiter may proceed when none of the parts its Arg names (a
// []string) holds a key older than its own.
func First(v *View, w *Waiter) (bool, error) {
	for _, l := range w.Arg.([]string) {
		if f := v.Line(l).First(); f != nil && f.CreateRev < w.Rev {
			return false, nil
		}
	}
	return true, nil
}
