package faulttest

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one change under the scenario's root, as etcd ordered it.
type Event struct {
	Rev       int64
	Delete    bool
	Key       string
	CreateRev int64
	Value     string
	Seen      time.Time // when the log saw it (for "how long" figures)
}

// EventLog is etcd's own history of the scenario's keys: a watch from the
// scenario's first revision, so every invariant can be checked against
// the order etcd committed things in, not against anyone's clock. It uses
// the admin client, which no fault touches. If the watch ever breaks (a
// compaction after a member restart could make history unrecoverable),
// the log marks itself incomplete and checks that need it are skipped
// with a note rather than trusted.
type EventLog struct {
	mu         sync.Mutex
	events     []Event
	rev        int64 // last revision seen
	incomplete bool
	cancel     context.CancelFunc
	done       chan struct{}
}

// StartLog starts recording everything under root from revision from.
func StartLog(cli *clientv3.Client, root string, from int64) *EventLog {
	ctx, cancel := context.WithCancel(context.Background())
	l := &EventLog{cancel: cancel, done: make(chan struct{}), rev: from - 1}
	go func() {
		defer close(l.done)
		for ctx.Err() == nil {
			l.mu.Lock()
			next := l.rev + 1
			l.mu.Unlock()
			wch := cli.Watch(ctx, root, clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithPrevKV())
			for resp := range wch {
				if resp.CompactRevision != 0 {
					l.mu.Lock()
					l.incomplete = true
					l.mu.Unlock()
					return
				}
				if resp.Err() != nil {
					break
				}
				now := time.Now()
				l.mu.Lock()
				for _, ev := range resp.Events {
					e := Event{Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key), CreateRev: ev.Kv.CreateRevision, Value: string(ev.Kv.Value), Seen: now}
					if ev.Type == clientv3.EventTypeDelete {
						e.Delete = true
						if ev.PrevKv != nil {
							e.CreateRev = ev.PrevKv.CreateRevision
							e.Value = string(ev.PrevKv.Value)
						}
					}
					l.events = append(l.events, e)
					l.rev = e.Rev
				}
				l.mu.Unlock()
			}
		}
	}()
	return l
}

// Sync waits until the log has seen revision rev.
func (l *EventLog) Sync(ctx context.Context, rev int64) bool {
	for {
		l.mu.Lock()
		r, inc := l.rev, l.incomplete
		l.mu.Unlock()
		if r >= rev || inc {
			return !inc
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop ends recording.
func (l *EventLog) Stop() { l.cancel(); <-l.done }

// Complete reports whether the log holds every event.
func (l *EventLog) Complete() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.incomplete
}

// Events returns a copy of the log.
func (l *EventLog) Events() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.events...)
}

// Replay answers "which keys existed under a prefix at revision r" from
// the log, walking forward once.
type Replay struct {
	events []Event
	i      int
	live   map[string]Event
}

// NewReplay starts a replay of events from the beginning.
func NewReplay(events []Event) *Replay {
	return &Replay{events: events, live: map[string]Event{}}
}

// At advances to revision r (r must not decrease between calls) and
// returns the keys under prefix that exist at r, oldest first.
func (p *Replay) At(r int64, prefix string) []Event {
	for p.i < len(p.events) && p.events[p.i].Rev <= r {
		ev := p.events[p.i]
		if ev.Delete {
			delete(p.live, ev.Key)
		} else {
			p.live[ev.Key] = ev
		}
		p.i++
	}
	var out []Event
	for k, ev := range p.live {
		if strings.HasPrefix(k, prefix) {
			out = append(out, ev)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreateRev < out[b].CreateRev })
	return out
}

// DeletedAt returns when the log saw the key with create revision
// createRev deleted, or the zero time.
func (l *EventLog) DeletedAt(createRev int64) (time.Time, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range l.events {
		if ev.Delete && ev.CreateRev == createRev {
			return ev.Seen, ev.Rev
		}
	}
	return time.Time{}, 0
}
