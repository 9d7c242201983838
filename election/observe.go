package election

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observe returns a channel that receives the election's current leader
// first, then every change in order: a new leader, a new value proclaimed
// by the leader, and the zero Leader (Token 0) when no one leads. It
// sends a state only when it differs from the one sent before.
//
// The channel closes when ctx ends, and never before: after a
// compaction, a reconnect or a member failover Observe resumes its watch
// where it stopped or, when that history is gone, re-reads the current
// leader, so it may skip states it could not see but never reports one
// that is not true. The caller must keep receiving; Observe waits for
// it. An Election made with a nil session or bad name has nothing to
// observe: its channel is closed at once.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	if e.err != nil {
		close(ch)
		return ch
	}
	go observe(ctx, e.cli, e.prefix, ch)
	return ch
}

// observer follows the first key of a line of candidates.
type observer struct {
	cli    *clientv3.Client
	prefix string
	out    chan<- Leader

	cur      Leader // the state known at revision seen
	curKey   string
	seen     int64  // every event up to here is reflected in cur
	sent     bool   // something was sent
	lastSent Leader // what was sent last
	resume   bool   // the watch may resume from seen+1
}

func observe(ctx context.Context, cli *clientv3.Client, prefix string, out chan<- Leader) {
	defer close(out)
	o := &observer{cli: cli, prefix: prefix, out: out}
	delay := retryMin
	for ctx.Err() == nil {
		if o.follow(ctx) {
			delay = retryMin
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, retryMax)
	}
}

const (
	retryMin = 10 * time.Millisecond
	retryMax = 500 * time.Millisecond
)

// follow opens one watch and follows it until it breaks. It reports
// whether it made progress, so that failures back off and successes don't.
func (o *observer) follow(ctx context.Context) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	var wch clientv3.WatchChan
	progress := false
	if o.resume {
		// Picks up exactly where the last watch broke, so no change in
		// between is missed.
		wch = o.cli.Watch(wctx, o.prefix, clientv3.WithPrefix(), clientv3.WithRev(o.seen+1))
	} else {
		// A watch from now, confirmed by the server before the read, is
		// synced from the start and cannot miss what follows the read.
		wch = o.cli.Watch(wctx, o.prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil || !resp.Created {
				return false
			}
		case <-ctx.Done():
			return false
		}
		l, key, rev, err := readLeader(ctx, o.cli, o.prefix, 0)
		if err != nil {
			return false
		}
		o.cur, o.curKey, o.seen, o.resume = l, key, rev, true
		if !o.emit(ctx) {
			return false
		}
		progress = true
	}
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return progress
		case resp, ok = <-wch:
		}
		if !ok || resp.Canceled || resp.Err() != nil {
			if errors.Is(resp.Err(), rpctypes.ErrCompacted) || resp.CompactRevision != 0 {
				o.resume = false
			}
			return progress
		}
		if !o.apply(ctx, resp.Events) {
			return progress
		}
		progress = true
	}
}

// apply folds one response's events into the state, sending each change.
// It returns false when the watch must be reopened.
func (o *observer) apply(ctx context.Context, events []*clientv3.Event) bool {
	skip := o.seen // events up to here are already reflected
	for _, ev := range events {
		rev := ev.Kv.ModRevision
		if rev <= skip {
			continue
		}
		key := string(ev.Kv.Key)
		switch {
		case ev.Type == clientv3.EventTypeDelete && key == o.curKey:
			// The leader left. Reading at exactly this revision names the
			// next leader even if it, too, has left since: we report every
			// leader, in order, not just the latest.
			l, k, _, err := readLeader(ctx, o.cli, o.prefix, rev)
			if err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					o.resume = false
				} else {
					o.seen = rev - 1 // the reopened watch repeats this event
				}
				return false
			}
			o.cur, o.curKey, skip = l, k, rev
		case ev.Type == clientv3.EventTypePut && key == o.curKey && ev.Kv.CreateRevision == o.cur.Token:
			o.cur.Value = string(ev.Kv.Value)
		case ev.Type == clientv3.EventTypePut && o.curKey == "" && ev.IsCreate():
			o.cur, o.curKey = Leader{Value: string(ev.Kv.Value), Token: ev.Kv.CreateRevision}, key
		default:
			// A candidate joined or left behind the leader: no change.
			o.seen = max(o.seen, rev)
			continue
		}
		o.seen = max(o.seen, rev)
		if !o.emit(ctx) {
			return false
		}
	}
	return true
}

// emit sends the current state unless it was the last one sent.
func (o *observer) emit(ctx context.Context) bool {
	if o.sent && o.lastSent == o.cur {
		return true
	}
	select {
	case o.out <- o.cur:
		o.sent = true
		o.lastSent = o.cur
		return true
	case <-ctx.Done():
		return false
	}
}
