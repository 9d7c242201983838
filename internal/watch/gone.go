package watch

import (
	"context"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"go.etcd.io/etcd/api/v3/mvccpb"
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
		gs := &goneSet{by: map[string]map[*goneWatch]struct{}{}}
		return gs, gs.changed
	}).(*goneSet)
	w := &goneWatch{key: key, rev: rev, gone: gone}
	err := m.Locked(func(v *View, loaded bool) {
		ws := gs.by[key]
		if ws == nil {
			ws = map[*goneWatch]struct{}{}
			gs.by[key] = ws
		}
		ws[w] = struct{}{}
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

// goneSet is a mirror's watched holds, by key; read and changed only
// under the mirror's lock.
type goneSet struct {
	by map[string]map[*goneWatch]struct{}
}

type goneWatch struct {
	key   string
	rev   int64
	gone  func(error)
	fired bool
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
		for _, ws := range gs.by {
			for w := range ws {
				if !w.fired {
					w.fired = true
					go w.gone(c.Err)
				}
			}
		}
	case c.Reloaded:
		for _, ws := range gs.by {
			for w := range ws {
				gs.check(v, w)
			}
		}
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
// no mirror (a queue claim): it follows the range's feed and re-reads the
// key after any gap.
type RangeOf struct {
	Hub      *Hub
	Key, End string
}

// WatchGone calls gone once, when key (created at rev) is deleted or
// replaced, or the feed ends for good.
func (r RangeOf) WatchGone(key string, rev int64, gone func(error)) (stop func()) {
	f := r.Hub.Feed(r.Key, r.End)
	sub := f.Subscribe(rev)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer f.Release()
		defer sub.Close()
		cli := r.Hub.cli
		pause := 10 * time.Millisecond
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.C():
			}
			for {
				evs, resync, err := sub.Take()
				if err != nil {
					gone(err)
					return
				}
				if resync {
					resp, err := cli.Get(ctx, key, withKeysOnly()...)
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						if etcderr.Refused(err) || etcderr.Closed(cli) {
							gone(etcderr.Explain(cli, err))
							return
						}
						sleep(ctx, pause)
						pause = min(2*pause, 500*time.Millisecond)
						sub.signal() // try the read again
						break
					}
					pause = 10 * time.Millisecond
					if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != rev {
						gone(ErrGone)
						return
					}
					continue
				}
				if len(evs) == 0 {
					break
				}
				for _, ev := range evs {
					if string(ev.Kv.Key) == key && ev.Kv.ModRevision > rev && (ev.Type == mvccpb.DELETE || ev.Kv.CreateRevision != rev) {
						gone(ErrGone)
						return
					}
				}
			}
		}
	}()
	return cancel
}
