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
func (o MirrorOf) WatchGone(key string, rev int64, gone func(error)) (stop func()) {
	m := o.Hub.Mirror(o.Base)
	fired := false
	cancel := m.Listen(func(v *View, c Change) {
		if fired || (c.Err == nil && v.Rev() < rev) {
			return
		}
		if c.Err != nil {
			fired = true
			go gone(c.Err)
			return
		}
		if e := v.Get(key); e == nil || e.CreateRev != rev {
			fired = true
			go gone(ErrGone)
		}
	})
	return func() {
		cancel()
		m.Release()
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
