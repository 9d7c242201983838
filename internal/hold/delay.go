package hold

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A lock-delay makes the next holder of a name wait, after a hold of it
// ended without its owner letting it go (its lease expired or was
// revoked, or its key was deleted by someone else), before its grant
// returns: Chubby's and Consul's answer for resources that cannot check
// a fencing token. The old holder may still be running, or its requests
// still in flight; the delay gives them time to stop or land first.
//
// How a successor tells a clean release from an unclean loss, without a
// read on the clean path: every hold of a primitive with a lock-delay
// creates, in its create Txn, a mark next to its key (<base>x/<part>/<id>,
// on no lease), and its owner deletes the mark in the same request that
// deletes the key (Release, Abandon). A key deleted by its lease, or by
// anyone else, leaves its mark behind: a dead mark. So a clean handoff
// costs the same requests as without a lock-delay (the create Txn puts
// one key more, the release is a Txn of two deletes instead of one
// delete), and the successor's mirror, which sees the key and its mark
// go at one revision, has nothing to wait for. Because a dead mark stays
// until someone acts on it, the delay is owed even by a holder that
// comes long after a loss no one saw.
//
// The delay is timed by the server, never by a client's clock: the
// first grant to find dead marks grants a lease of the delay's length,
// puts <base>delay on it and deletes the dead marks, in one Txn that
// checks the marks are still dead; every grant then waits, through the
// process's mirror of the name, until etcd's lessor has deleted that key.
// etcd counts leases in whole seconds and has a minimum TTL (1.5 × the
// election timeout, rounded up: 2 s with its default timing), so the
// delay waited is at least the one asked for, counted from when the loss
// was first seen.

// MaxDelay is the longest lock-delay a primitive accepts.
const MaxDelay = time.Hour

// ErrDelay is wrapped by CheckDelay's errors.
var ErrDelay = errors.New("lock-delay must be a whole number of seconds from 1s to 1h")

// CheckDelay reports why d cannot be a lock-delay (0 turns it off).
func CheckDelay(d time.Duration) error {
	if d == 0 || (d >= time.Second && d <= MaxDelay && d%time.Second == 0) {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrDelay, d)
}

// markValue is a mark's value: the lock-delay its holder asked for, which
// a successor waits for if the mark dies.
func markValue(d time.Duration) string { return strconv.FormatInt(int64(d/time.Second), 10) }

// delayReads are the ops a create Txn ends with, per base: its marks
// (no more than its own plus one, in key order so etcd honours the limit)
// and the pending delay.
func (h *Hold) delayReads() []clientv3.Op {
	ops := make([]clientv3.Op, 0, 2*len(h.bases))
	for _, b := range h.bases {
		p := b + keys.PartMark + "/"
		ops = append(ops,
			clientv3.OpGet(p, clientv3.WithRange(keys.RangeEnd(p)), clientv3.WithLimit(int64(h.ownIn(b)+1)), clientv3.WithKeysOnly()),
			clientv3.OpGet(b+keys.LeafDelay, clientv3.WithKeysOnly()))
	}
	return ops
}

// ownIn counts the hold's marks under base.
func (h *Hold) ownIn(base string) int {
	n := 0
	for _, m := range h.marks {
		if strings.HasPrefix(m, base) {
			n++
		}
	}
	return n
}

// quietIn reads a successful create's answer: true when it saw no mark
// but its own and no pending delay, so its grant owes nothing and needs
// no mirror (an uncontended Lock stays one Txn).
func (h *Hold) quietIn(rs []*pb.ResponseOp) bool {
	if len(h.bases) == 0 {
		return true
	}
	tail := rs[len(rs)-2*len(h.bases):]
	for i, b := range h.bases {
		marks, delay := tail[2*i].GetResponseRange(), tail[2*i+1].GetResponseRange()
		if marks.More || len(marks.Kvs) > h.ownIn(b) || len(delay.Kvs) > 0 {
			return false
		}
	}
	return true
}

// Admit is Grant for a primitive with a lock-delay (Config.Delay): it
// first waits out any delay owed (see above) through the process's
// mirror of the name, then confirms the grant. A hold whose create saw
// nothing owed is granted at once. It returns ctx's error or the
// session's if they end first (the caller must then Abandon, as after
// any failed Grant), or the loss if the hold's key goes meanwhile.
func (h *Hold) Admit(ctx context.Context) error { return h.admit(ctx, false) }

// ErrDelayed is returned by TryAdmit when a lock-delay is pending.
var ErrDelayed = errors.New("hold: lock-delay pending")

// TryAdmit is Admit for a try (TryLock, TryAcquire): when a delay is
// owed it does not wait but returns ErrDelayed (having started the delay
// if it found the loss first), and the caller abandons the hold.
func (h *Hold) TryAdmit(ctx context.Context) error { return h.admit(ctx, true) }

func (h *Hold) admit(ctx context.Context, try bool) error {
	h.mu.Lock()
	owed := len(h.bases) > 0 && !h.quiet
	h.mu.Unlock()
	if owed {
		if err := h.settle(ctx, try); err != nil {
			return err
		}
	}
	return h.Grant()
}

func (h *Hold) settle(ctx context.Context, try bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-h.s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	hub := watch.For(h.s.Client())
	for _, b := range h.bases {
		m := hub.Mirror(b)
		err := h.settleIn(ctx, m, b, try)
		m.Release()
		if err != nil {
			if serr := h.s.Err(); serr != nil {
				return h.wrap(serr)
			}
			return err
		}
	}
	return nil
}

// settleIn waits until base has no dead mark and no pending delay, turning
// dead marks into a pending delay itself when it finds some.
func (h *Hold) settleIn(ctx context.Context, m *watch.Mirror, base string, try bool) error {
	h.mu.Lock()
	at, rev := h.createdAt, h.rev
	h.mu.Unlock()
	t := m.Shared("hold: marks", newMarks(base)).(*marks)
	logged := false
	pause := 10 * time.Millisecond
	for {
		var (
			dead    []deadMark
			pending string
			gone    bool
			seen    int64
		)
		err := m.Read(ctx, at, func(v *watch.View) {
			seen = v.Rev()
			t.prime(v)
			for i, k := range h.keys {
				if strings.HasPrefix(h.marks[i], base) {
					if e := v.Get(k); e == nil || e.CreateRev != rev {
						gone = true
					}
				}
			}
			if e := v.Get(base + keys.LeafDelay); e != nil {
				pending = string(e.Value)
			}
			for _, d := range t.dead {
				dead = append(dead, d)
				if len(dead) == maxConvert {
					break
				}
			}
		})
		switch {
		case err != nil:
			return h.wrap(err)
		case gone:
			h.lose(watch.ErrGone)
			return h.Lost()
		case len(dead) > 0:
			next, err := h.convert(ctx, base, dead)
			if err != nil {
				if etcderr.Transient(err) && ctx.Err() == nil {
					sleep(ctx, pause)
					pause = min(2*pause, 500*time.Millisecond)
					continue
				}
				return h.wrap(etcderr.Explain(h.s.Client(), err))
			}
			pause = 10 * time.Millisecond
			at = next
			continue
		case pending == "":
			return nil
		case try:
			return ErrDelayed
		}
		if !logged {
			logged = true
			h.s.Logger().Warn("coord lock-delay: waiting before the grant, after a hold ended without being released",
				"kind", h.cfg.Kind, "name", h.cfg.Label, "delay", pending)
		}
		at = seen + 1 // the next change: the delay key's expiry, or anything else to re-check
	}
}

// maxConvert bounds the dead marks one Txn turns into a delay.
const maxConvert = 32

// convert turns dead marks into a pending delay: a lease of the longest
// delay they ask for, the delay key on it, and the marks gone, in one Txn
// that checks they are still dead. It returns the revision to read the
// mirror at next. When the Txn fails someone else converted them (or a
// key came back): the unused lease simply expires.
func (h *Hold) convert(ctx context.Context, base string, dead []deadMark) (int64, error) {
	d := int64(h.cfg.Delay / time.Second)
	var cmps []clientv3.Cmp
	var dels []clientv3.Op
	lost := make([]string, 0, len(dead))
	for _, m := range dead {
		d = max(d, m.delay)
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(m.mark), "=", m.rev),
			clientv3.Compare(clientv3.CreateRevision(m.key), "=", 0))
		dels = append(dels, clientv3.OpDelete(m.mark))
		lost = append(lost, strings.TrimPrefix(m.key, base))
	}
	cli := h.s.Client()
	l, err := cli.Grant(ctx, d)
	if err != nil {
		return 0, err
	}
	val := fmt.Sprintf("lock-delay %ds after %s ended without a release", d, strings.Join(lost, ", "))
	resp, err := cli.Txn(ctx).If(cmps...).
		Then(append([]clientv3.Op{clientv3.OpPut(base+keys.LeafDelay, val, clientv3.WithLease(l.ID))}, dels...)...).
		Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		h.s.Logger().Warn("coord lock-delay: a hold ended without being released; the next grant waits",
			"kind", h.cfg.Kind, "name", h.cfg.Label, "lost", lost, "delay", time.Duration(d)*time.Second)
	}
	return resp.Header.Revision, nil
}

// deadMark is a mark whose key is gone.
type deadMark struct {
	mark, key string
	rev       int64 // the mark's create revision
	delay     int64 // seconds
}

// marks is a mirror's dead marks of one base, kept current by its
// listener (so a grant's check costs nothing that grows with the line).
// It is read and changed only under the mirror's lock.
type marks struct {
	base   string
	primed bool
	dead   map[string]deadMark
}

func newMarks(base string) func() (any, watch.Listener) {
	return func() (any, watch.Listener) {
		t := &marks{base: base, dead: map[string]deadMark{}}
		return t, t.changed
	}
}

// prime fills the set from the whole state, once: a Shared value made on
// a mirror that was loaded already has seen no change yet.
func (t *marks) prime(v *watch.View) {
	if t.primed {
		return
	}
	t.primed = true
	clear(t.dead)
	v.Line(keys.PartMark).Each(func(e *watch.Entry) bool {
		t.check(v, e.Key)
		return true
	})
}

func (t *marks) changed(v *watch.View, c watch.Change) {
	switch {
	case c.Err != nil:
		return
	case c.Reloaded:
		t.primed = false
		t.prime(v)
		return
	}
	for _, ev := range c.Events {
		k := string(ev.Kv.Key)
		if _, ok := keys.Marked(k, t.base); ok {
			t.check(v, k)
		} else if mark, base, ok := keys.MarkOf(k); ok && base == t.base {
			t.check(v, mark)
		}
	}
}

// check records whether mark is dead in v.
func (t *marks) check(v *watch.View, mark string) {
	key, ok := keys.Marked(mark, t.base)
	e := v.Get(mark)
	if !ok || e == nil || v.Get(key) != nil {
		delete(t.dead, mark)
		return
	}
	d, _ := strconv.ParseInt(string(e.Value), 10, 64)
	t.dead[mark] = deadMark{mark: mark, key: key, rev: e.CreateRev, delay: min(max(d, 0), int64(MaxDelay/time.Second))}
}
