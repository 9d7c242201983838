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

// observer follows the first key of a line of candidates. It keeps the
// whole line in memory (its keys are few: one per candidate), so each
// event says by itself who leads next, and the sequence it reports needs
// no read at an old revision that a compaction could have removed.
type observer struct {
	cli    *clientv3.Client
	prefix string
	out    chan<- Leader

	line     map[string]Leader // every candidate, by key
	cur      Leader            // the first of line
	curKey   string
	seen     int64  // every event up to here is reflected in line
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
		// Picks up exactly where the last watch broke (a reconnect, a
		// member that lost its leader), so no change in between is missed.
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
		resp, err := o.cli.Get(ctx, o.prefix, clientv3.WithPrefix())
		if err != nil {
			return false
		}
		o.line = make(map[string]Leader, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			o.line[string(kv.Key)] = Leader{Value: string(kv.Value), Token: kv.CreateRevision}
		}
		o.seen, o.resume = resp.Header.Revision, true
		o.elect()
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
				// The history we would resume from is gone: start over
				// from the present, which may skip states but never lies.
				o.resume = false
			}
			return progress
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision <= o.seen {
				continue // already in the read
			}
			if !o.apply(ctx, ev) {
				return progress
			}
			progress = true
		}
		// A revision's events always arrive in one response, so seen
		// moves only past whole revisions.
		if n := len(resp.Events); n > 0 {
			o.seen = max(o.seen, resp.Events[n-1].Kv.ModRevision)
		}
	}
}

// apply folds one event into the line and sends the leader if it changed.
func (o *observer) apply(ctx context.Context, ev *clientv3.Event) bool {
	key := string(ev.Kv.Key)
	switch ev.Type {
	case clientv3.EventTypePut:
		o.line[key] = Leader{Value: string(ev.Kv.Value), Token: ev.Kv.CreateRevision}
		switch {
		case key == o.curKey:
			o.cur = o.line[key]
		case o.curKey == "":
			o.cur, o.curKey = o.line[key], key
		default:
			return true // a candidate joined behind the leader
		}
	case clientv3.EventTypeDelete:
		delete(o.line, key)
		if key != o.curKey {
			return true // a candidate left behind the leader
		}
		o.elect()
	}
	return o.emit(ctx)
}

// elect makes the oldest candidate of the line the current leader.
func (o *observer) elect() {
	o.cur, o.curKey = Leader{}, ""
	for k, l := range o.line {
		if o.curKey == "" || l.Token < o.cur.Token {
			o.cur, o.curKey = l, k
		}
	}
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
