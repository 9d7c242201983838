package watch

import (
	"context"
	"errors"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MirrorOf is a hold's Watcher for keys that a primitive's mirror covers:
// the hold shares the mirror (and its one watch) with the primitive's
// waiters and every other hold of the process.
type MirrorOf struct {
	Hub  *Hub
	Base string
}

// WatchGone calls gone once, when the mirror (current at or past rev) no
// longer has key as created at rev, or when the mirror ends for good. The
// mirror stays referenced until stop.
//
// The holds of one mirror share one listener, which looks only at the
// holds of the keys a change touched (all of them after a reload), so a
// process that holds many keys of one range (a member's shards, a
// consumer's claims) pays per event for the keys it touches, not for
// every key it holds.
func (o MirrorOf) WatchGone(key string, rev int64, gone func(error)) (stop func()) {
	m := o.Hub.Mirror(o.Base)
	gs := m.Shared("watch: gone", func() (any, Listener) {
		gs := &goneSet{}
		return gs, gs.changed
	}).(*goneSet)
	w := &goneWatch{key: key, rev: rev, gone: gone}
	err := m.Locked(func(v *View, loaded bool) {
		gs.add(w)
		if loaded {
			gs.check(v, w)
		}
	})
	if err != nil {
		w.fired = true
		go gone(err)
	}
	return func() {
		m.Locked(func(*View, bool) { gs.remove(w) })
		m.Release()
	}
}

// goneSet is the watched holds of a mirror or a feed, by key; read and
// changed only under the mirror's or the feed's lock.
type goneSet struct {
	by map[string]map[*goneWatch]struct{}
}

type goneWatch struct {
	key   string
	rev   int64
	gone  func(error)
	fired bool
}

func (gs *goneSet) add(w *goneWatch) {
	if gs.by == nil {
		gs.by = map[string]map[*goneWatch]struct{}{}
	}
	ws := gs.by[w.key]
	if ws == nil {
		ws = map[*goneWatch]struct{}{}
		gs.by[w.key] = ws
	}
	ws[w] = struct{}{}
}

// has reports whether w is still in the set (not stopped).
func (gs *goneSet) has(w *goneWatch) bool {
	_, ok := gs.by[w.key][w]
	return ok
}

// all calls fn for every watched hold.
func (gs *goneSet) all(fn func(*goneWatch)) {
	for _, ws := range gs.by {
		for w := range ws {
			fn(w)
		}
	}
}

func (gs *goneSet) remove(w *goneWatch) {
	if ws := gs.by[w.key]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(gs.by, w.key)
		}
	}
}

// changed is the set's mirror listener.
func (gs *goneSet) changed(v *View, c Change) {
	switch {
	case c.Err != nil:
		gs.all(func(w *goneWatch) {
			if !w.fired {
				w.fired = true
				go w.gone(c.Err)
			}
		})
	case c.Reloaded:
		gs.all(func(w *goneWatch) { gs.check(v, w) })
	default:
		for _, ev := range c.Events {
			for w := range gs.by[string(ev.Kv.Key)] {
				gs.check(v, w)
			}
		}
	}
}

// check fires w if the mirror, current past w's create, no longer has
// its key as created then.
func (gs *goneSet) check(v *View, w *goneWatch) {
	if w.fired || v.Rev() < w.rev {
		return
	}
	if e := v.Get(w.key); e == nil || e.CreateRev != w.rev {
		w.fired = true
		go w.gone(ErrGone)
	}
}

// RangeOf is a hold's Watcher over a Feed, for keys whose primitive keeps
// no mirror (a queue's claims): the holds of one feed share it, and it
// looks only at the holds of the key an event touched, so a consumer with
// many claims in flight pays per event for one map lookup, not for every
// claim, and no hold has a goroutine of its own.
type RangeOf struct {
	Hub      *Hub
	Key, End string
}

// WatchGone calls gone once, when key (created at rev) is deleted or
// replaced, or the feed ends for good. The feed stays referenced until
// stop.
//
// The feed checks the key against every event it records from then on,
// and against the events it already holds since rev. When those do not
// reach back to rev (a hold registered long after its key was made, or a
// feed that is reopening), or after a gap in the watch, the key is read
// instead: by one goroutine for all such holds, in batches.
func (r RangeOf) WatchGone(key string, rev int64, gone func(error)) (stop func()) {
	f := r.Hub.Feed(r.Key, r.End)
	w := &goneWatch{key: key, rev: rev, gone: gone}
	f.mu.Lock()
	if !f.running {
		// Failed for good just now (Feed starts a stopped one).
		w.fired = true
		err := f.failed
		if err == nil {
			err = errors.New("watch: feed stopped")
		}
		go gone(err)
	} else {
		f.gone.add(w)
		if f.synced && f.from <= rev {
			// The history holds every event above rev.
			for i := len(f.hist) - 1; i >= 0 && f.hist[i].Kv.ModRevision > rev; i-- {
				if string(f.hist[i].Kv.Key) == key && goneBy(w, f.hist[i]) {
					f.fire(w, ErrGone)
					break
				}
			}
		} else {
			f.goneCheck(w)
		}
	}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.gone.remove(w)
		delete(f.goneRead, w)
		f.mu.Unlock()
		f.Release()
	}
}

// goneBy reports whether ev ends w's key as created at w.rev.
func goneBy(w *goneWatch, ev *clientv3.Event) bool {
	return ev.Kv.ModRevision > w.rev && (ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != w.rev)
}

// fire calls w's gone once. f.mu held.
func (f *Feed) fire(w *goneWatch, err error) {
	if w.fired {
		return
	}
	w.fired = true
	delete(f.goneRead, w)
	go w.gone(err)
}

// goneEvents checks the watched holds of the keys evs touch. f.mu held.
func (f *Feed) goneEvents(evs []*clientv3.Event) {
	if len(f.gone.by) == 0 {
		return
	}
	for _, ev := range evs {
		for w := range f.gone.by[string(ev.Kv.Key)] {
			if goneBy(w, ev) {
				f.fire(w, ErrGone)
			}
		}
	}
}

// goneResync has every watched hold read again: the reopened watch
// delivers what comes after now, and a read now sees what came before.
// f.mu held.
func (f *Feed) goneResync() {
	f.gone.all(f.goneCheck)
}

// goneFail ends every watched hold with err. f.mu held.
func (f *Feed) goneFail(err error) {
	f.gone.all(func(w *goneWatch) { f.fire(w, err) })
}

// goneCheck has w's key read, once the feed is synced (it rereads every
// hold when it gets there). f.mu held.
func (f *Feed) goneCheck(w *goneWatch) {
	if w.fired {
		return
	}
	if f.goneRead == nil {
		f.goneRead = map[*goneWatch]struct{}{}
	}
	f.goneRead[w] = struct{}{}
	if f.synced && !f.checking {
		f.checking = true
		go f.checkGone(f.ctx)
	}
}

// goneBatch bounds the keys one read of checkGone covers (etcd allows 128
// operations in a Txn by default).
const goneBatch = 64

// checkGone reads the keys of the holds goneCheck marked, in batches, and
// fires those whose key is gone. It ends when none are left, or when the
// feed stops being synced (it rereads them all once it is again).
func (f *Feed) checkGone(ctx context.Context) {
	cli := f.hub.cli
	pause := 10 * time.Millisecond
	for {
		f.mu.Lock()
		if len(f.goneRead) == 0 || !f.synced || ctx.Err() != nil {
			f.checking = false
			f.mu.Unlock()
			return
		}
		var batch []*goneWatch
		var gets []clientv3.Op
		for w := range f.goneRead {
			delete(f.goneRead, w)
			batch = append(batch, w)
			gets = append(gets, clientv3.OpGet(w.key, clientv3.WithKeysOnly()))
			if len(batch) == goneBatch {
				break
			}
		}
		f.mu.Unlock()
		resp, err := cli.Txn(ctx).Then(gets...).Commit()
		f.mu.Lock()
		for i, w := range batch {
			if !f.gone.has(w) {
				continue // stopped meanwhile
			}
			switch {
			case err == nil:
				if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != w.rev {
					f.fire(w, ErrGone)
				}
			case ctx.Err() != nil:
			case etcderr.Refused(err) || etcderr.Closed(cli):
				f.fire(w, etcderr.Explain(cli, err))
			default:
				f.goneRead[w] = struct{}{} // read it again, after a pause
			}
		}
		f.mu.Unlock()
		if err == nil {
			pause = 10 * time.Millisecond
			continue
		}
		if ctx.Err() != nil || !sleep(ctx, pause) {
			f.mu.Lock()
			f.checking = false
			f.mu.Unlock()
			return
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}
