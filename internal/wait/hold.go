package wait

import (
	"context"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Hold watches a key its owner created and ends when the key is deleted
// (by anyone, or with its lease) or when any stopper (the owner's
// session) ends. It is what makes a held lock's, leadership's or permit's
// Done channel honest. A Hold is safe for concurrent use.
type Hold struct {
	done   chan struct{}
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error
}

// NewHold starts watching key, which the caller created at revision rev.
// The watch starts right after rev, so a deletion at any later revision is
// seen even if it happened before NewHold was called. (Such a watch may
// start in etcd's unsynced set and see events up to 100 ms late; that is
// fine for loss detection, which is not on anyone's handoff path.)
func NewHold(cli *clientv3.Client, key string, rev int64, stops ...Stopper) *Hold {
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hold{done: make(chan struct{}), cancel: cancel}
	go h.run(ctx, cli, key, rev, stops)
	return h
}

func (h *Hold) run(ctx context.Context, cli *clientv3.Client, key string, rev int64, stops []Stopper) {
	sctx, scancel := withStops(ctx, stops)
	defer scancel()
	since := rev
	b := newBackoff()
	for {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(sctx))
		gone, broken := false, false
		for resp := range cli.Watch(wctx, key, clientv3.WithRev(since+1), clientv3.WithFilterPut()) {
			if resp.Err() != nil || resp.Canceled {
				broken = true
				break
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					gone = true
				}
				since = max(since, ev.Kv.ModRevision)
			}
			if gone {
				break
			}
			since = max(since, resp.Header.Revision)
		}
		wcancel()
		if ctx.Err() != nil { // Stop was called
			return
		}
		if sctx.Err() != nil { // a stopper ended
			h.end(stopped(sctx, stops))
			return
		}
		if !gone && broken {
			// Compacted, no leader, or a lost stream: ask for the truth.
			resp, err := cli.Get(sctx, key)
			if err != nil {
				b.sleep(sctx)
				continue
			}
			b.reset()
			if len(resp.Kvs) > 0 && resp.Kvs[0].CreateRevision == rev {
				since = resp.Header.Revision
				continue
			}
			gone = true
		}
		if gone {
			h.end(fmt.Errorf("%w: %s", ErrKeyGone, key))
			return
		}
	}
}

func (h *Hold) end(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
		close(h.done)
	}
}

// Done is closed when the hold is lost.
func (h *Hold) Done() <-chan struct{} { return h.done }

// Err is nil while the hold lasts, then says why it ended: ErrKeyGone, or
// the stopper's error (session.ErrExpired, say).
func (h *Hold) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// Stop stops watching without ending the hold, for an owner that has let
// the key go itself. Done stays open.
func (h *Hold) Stop() { h.cancel() }

// Release stops watching and ends the hold with err, for an owner that let
// the key go itself and wants Done closed (a released lock's Done, say).
func (h *Hold) Release(err error) {
	h.cancel()
	h.end(err)
}
