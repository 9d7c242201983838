package watch

import (
	"context"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Check reads the state a wait is waiting for. done ends the wait; rev is
// the revision the read saw, so events at or below it are not read again.
// An error ends the wait, unless etcderr.Transient says a retry may cure
// it.
type Check func(ctx context.Context) (done bool, rev int64, err error)

// Until blocks until check reports done or ctx ends, following the
// process's feed of [key, end).
//
// since is the revision at which the caller last read the state and found
// the wait not over. If the feed's history covers everything after since,
// Until calls check only when an event newer than since arrives (matching
// relevant, when given); otherwise, or whenever the feed missed events, it
// calls check first. It never decides from an event alone: a wait ends
// with nil only after a read showed its condition met, so a broken watch,
// a compaction or a failover can only cause a re-read.
func (h *Hub) Until(ctx context.Context, key, end string, since int64, relevant func(*clientv3.Event) bool, check Check) error {
	f := h.Feed(key, end)
	defer f.Release()
	sub := f.Subscribe(since)
	defer sub.Close()
	pause := 10 * time.Millisecond
	need := false
	for {
		if need {
			done, rev, err := check(ctx)
			switch {
			case err != nil && etcderr.Transient(err) && ctx.Err() == nil:
				if !sleep(ctx, pause) {
					return ctx.Err()
				}
				pause = min(2*pause, 500*time.Millisecond)
				continue
			case err != nil:
				return etcderr.Explain(h.cli, err)
			case done:
				return nil
			}
			pause = 10 * time.Millisecond
			since, need = max(since, rev), false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.C():
		}
		evs, resync, err := sub.Take()
		if err != nil {
			return err
		}
		if resync {
			need = true
			continue
		}
		for _, ev := range evs {
			if ev.Kv.ModRevision > since && (relevant == nil || relevant(ev)) {
				need = true
			}
		}
	}
}
