package semaphore

import (
	"context"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// followerIdle is how long a Semaphore's watch outlives its last
	// waiter, so a process that waits again and again (a worker loop)
	// opens it once rather than on every wait.
	followerIdle = 10 * time.Second
	// followerHistory is how many recent events the watch keeps, so that a
	// waiter whose Txn landed just before it joined needs no re-read.
	followerHistory = 256
)

// follower is one watch on a Semaphore's subtree shared by all its
// waiters. It keeps the recent events: a waiter that joins with its Txn's
// revision T gets every event after T from the history and then as they
// come, so a contended Acquire usually costs its Txn and nothing more.
type follower struct {
	sem *Semaphore

	mu      sync.Mutex
	subs    map[*sub]struct{}
	running bool
	stop    context.CancelFunc
	idle    *time.Timer
	synced  chan struct{} // closed while the watch is open and confirmed
	isSync  bool
	from    int64             // hist holds every event with a revision above from
	hist    []*clientv3.Event // in revision order
}

// sub is one waiter's inbox.
type sub struct {
	mu     sync.Mutex
	evs    []*clientv3.Event
	broken bool // the watch broke: events may be missing from here on
	signal chan struct{}
}

// push adds events, or marks the inbox broken. Events after a break are
// dropped: past a gap they could mislead (a missed capacity decrease), and
// the waiter re-reads anyway.
func (s *sub) push(evs []*clientv3.Event, broken bool) {
	s.mu.Lock()
	if !s.broken {
		s.evs = append(s.evs, evs...)
	}
	s.broken = s.broken || broken
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *sub) take() ([]*clientv3.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, broken := s.evs, s.broken
	s.evs, s.broken = nil, false
	return evs, broken
}

// join registers a waiter that knows the state at revision since. It waits
// until the watch is confirmed, then returns the inbox, already holding
// every later event the watch has seen, and whether that is complete: if
// not, the waiter must re-read (events it also reads are then skipped by
// revision).
func (f *follower) join(ctx context.Context, since int64) (*sub, bool, error) {
	s := &sub{signal: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.subs == nil {
		f.subs = map[*sub]struct{}{}
	}
	f.subs[s] = struct{}{}
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	if !f.running {
		f.start()
	}
	if f.isSync {
		ok := since >= f.from
		if ok {
			var replay []*clientv3.Event
			for _, ev := range f.hist {
				if ev.Kv.ModRevision > since {
					replay = append(replay, ev)
				}
			}
			s.evs = replay
		}
		f.mu.Unlock()
		return s, ok, nil
	}
	synced := f.synced
	f.mu.Unlock()
	select {
	case <-synced:
	case <-s.signal: // halted before it synced: the inbox says broken
		s.signal <- struct{}{}
		return s, false, nil
	case <-ctx.Done():
		f.leave(s)
		return nil, false, ctx.Err()
	}
	// Everything after the watch's start is in the inbox; before it, only a
	// waiter that was current at the start has all it needs.
	f.mu.Lock()
	ok := f.isSync && since >= f.from
	f.mu.Unlock()
	return s, ok, nil
}

func (f *follower) leave(s *sub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, s)
	if len(f.subs) == 0 && f.running && f.idle == nil {
		f.idle = time.AfterFunc(followerIdle, f.stopIfIdle)
	}
}

func (f *follower) stopIfIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 && f.running {
		f.halt()
	}
}

// start runs the watch until it idles out or the session ends. f.mu held.
func (f *follower) start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.running, f.stop, f.synced = true, cancel, make(chan struct{})
	go func() {
		select {
		case <-f.sem.s.Done():
			f.mu.Lock()
			if f.stop != nil {
				f.halt()
			}
			f.mu.Unlock()
		case <-ctx.Done():
		}
	}()
	go f.run(ctx)
}

// halt stops the watch. f.mu held.
func (f *follower) halt() {
	f.stop()
	f.running, f.stop, f.isSync, f.hist = false, nil, false, nil
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	for s := range f.subs {
		s.push(nil, true)
	}
}

func (f *follower) run(ctx context.Context) {
	cli := f.sem.s.Client()
	base := f.sem.sp.Base()
	pause := 10 * time.Millisecond
	for ctx.Err() == nil {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, base, clientv3.WithRange(keys.RangeEnd(base)), clientv3.WithCreatedNotify())
		created, err := watchStarted(wctx, wch)
		if err != nil {
			wcancel()
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			pause = min(2*pause, 500*time.Millisecond)
			continue
		}
		pause = 10 * time.Millisecond
		f.mu.Lock()
		if ctx.Err() != nil { // halted while starting
			f.mu.Unlock()
			wcancel()
			return
		}
		f.isSync, f.from, f.hist = true, created, nil
		close(f.synced)
		f.mu.Unlock()
		for resp := range wch {
			if resp.Canceled || resp.Err() != nil {
				break
			}
			if len(resp.Events) == 0 {
				continue
			}
			f.mu.Lock()
			if ctx.Err() != nil { // halted: a newer watch may own the state
				f.mu.Unlock()
				break
			}
			f.hist = append(f.hist, resp.Events...)
			if over := len(f.hist) - followerHistory; over > 0 {
				// Evict whole revisions, so hist holds all events above from.
				cut := f.hist[over-1].Kv.ModRevision
				i := over
				for i < len(f.hist) && f.hist[i].Kv.ModRevision == cut {
					i++
				}
				f.from, f.hist = cut, append([]*clientv3.Event(nil), f.hist[i:]...)
			}
			for s := range f.subs {
				s.push(resp.Events, false)
			}
			f.mu.Unlock()
		}
		wcancel()
		f.mu.Lock()
		if f.isSync && ctx.Err() == nil {
			f.isSync, f.hist, f.synced = false, nil, make(chan struct{})
			for s := range f.subs {
				s.push(nil, true)
			}
		}
		f.mu.Unlock()
	}
}
