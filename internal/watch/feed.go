package watch

import (
	"context"
	"errors"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// historyLen is how many recent events a feed keeps at least (at most
// twice as many), so that a subscriber that read the state at a revision
// the history still covers needs no read of its own when it joins.
const historyLen = 1024

// Feed is one etcd watch over a range, shared by every subscriber in the
// process. It opens its watch from "now" and waits for the server to
// confirm it, so it is synced from the start (etcd serves a watch that
// starts at an older revision from its "unsynced" set, which it catches
// up only every 100 ms: that resync is what holds etcd's own Mutex to a
// few dozen handoffs a second). When the watch breaks (a compaction, a
// member without a leader, a lost stream) it reopens it from now and
// tells every subscriber to re-read, so no subscriber ever mistakes a gap
// for a quiet range. A closed client or a refused watch ends the feed and
// every subscription with that error, at once: a feed never spins.
type Feed struct {
	hub *Hub
	sp  span

	mu      sync.Mutex
	refs    int
	idle    *time.Timer
	running bool
	stop    context.CancelFunc
	synced  bool
	from    int64             // while synced, every event above from is seen
	hist    []*clientv3.Event // the latest events, in revision order
	subs    map[*Sub]struct{}
	ctx     context.Context // the running watch's; done once it stops
	failed  error           // why the feed ended for good

	// The holds watched through RangeOf, by key, checked against each
	// event as it is recorded; those a read must check (registered while
	// the history did not reach back to their create revision, or after a
	// gap), and whether a goroutine is making those reads.
	gone     goneSet
	goneRead map[*goneWatch]struct{}
	checking bool
}

// Feed returns the hub's feed over [key, end), starting it if needed,
// with a reference the caller gives back with Release.
func (h *Hub) Feed(key, end string) *Feed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.feedLocked(key, end)
}

// feedLocked is Feed with h.mu held. Locks are always taken in the order
// hub, mirror, feed.
func (h *Hub) feedLocked(key, end string) *Feed {
	sp := span{key, end}
	f, ok := h.feeds[sp]
	if !ok {
		f = &Feed{hub: h, sp: sp, subs: map[*Sub]struct{}{}}
		h.feeds[sp] = f
	}
	f.mu.Lock()
	f.refs++
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	if !f.running {
		f.start()
	}
	f.mu.Unlock()
	return f
}

// Release gives back a reference; the watch stops a while after the last.
func (f *Feed) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs--
	if f.refs == 0 && f.running && f.idle == nil {
		f.idle = time.AfterFunc(idleTimeout, f.stopIfIdle)
	}
}

func (f *Feed) stopIfIdle() {
	f.hub.mu.Lock()
	defer f.hub.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs == 0 && f.running {
		f.halt(nil)
		delete(f.hub.feeds, f.sp)
	}
}

// start runs the watch. f.mu held.
func (f *Feed) start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.running, f.stop, f.ctx = true, cancel, ctx
	go f.run(ctx)
}

// halt stops the watch and ends every subscription with err, or marks
// them for a re-read when err is nil. f.mu held.
func (f *Feed) halt(err error) {
	f.stop()
	f.running, f.synced, f.hist = false, false, nil
	if f.idle != nil {
		f.idle.Stop()
		f.idle = nil
	}
	for s := range f.subs {
		if err != nil {
			s.err = err
		} else {
			s.resync, s.evs = true, nil
		}
		s.signal()
	}
	if err != nil {
		f.failed = err
		f.goneFail(err)
	}
}

// fail ends the feed for good with err (a closed client, a refused
// watch); a later Feed call starts a fresh one.
func (f *Feed) fail(err error) {
	f.hub.mu.Lock()
	if f.hub.feeds[f.sp] == f {
		delete(f.hub.feeds, f.sp)
	}
	f.hub.mu.Unlock()
	f.mu.Lock()
	f.halt(err)
	f.mu.Unlock()
}

func (f *Feed) run(ctx context.Context) {
	cli := f.hub.cli
	pause := 10 * time.Millisecond
	for ctx.Err() == nil {
		if etcderr.Closed(cli) {
			f.fail(etcderr.ErrClientClosed)
			return
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := cli.Watch(wctx, f.sp.key, clientv3.WithRange(f.sp.end), clientv3.WithCreatedNotify())
		created, err := started(wctx, wch)
		if err != nil {
			wcancel()
			if ctx.Err() != nil {
				return
			}
			if etcderr.Closed(cli) {
				f.fail(etcderr.ErrClientClosed)
				return
			}
			if etcderr.Refused(err) {
				f.fail(err)
				return
			}
			if !sleep(ctx, pause) {
				return
			}
			pause = min(2*pause, 500*time.Millisecond)
			continue
		}
		pause = 10 * time.Millisecond
		f.mu.Lock()
		if ctx.Err() != nil {
			f.mu.Unlock()
			wcancel()
			return
		}
		f.synced, f.from, f.hist = true, created, nil
		for s := range f.subs {
			if s.resync {
				s.signal() // they may re-read now: everything after is seen
			}
		}
		f.goneResync()
		f.mu.Unlock()
		var werr error
		for resp := range wch {
			if werr = resp.Err(); werr != nil || resp.Canceled {
				break
			}
			if resp.IsProgressNotify() {
				// Every event of the range up to this revision was sent:
				// direct subscribers may count themselves current to it.
				f.progress(resp.Header.Revision)
				continue
			}
			if len(resp.Events) == 0 {
				continue
			}
			f.mu.Lock()
			if ctx.Err() != nil {
				f.mu.Unlock()
				break
			}
			f.record(resp.Events)
			f.goneEvents(resp.Events)
			var direct []func([]*clientv3.Event, int64)
			for s := range f.subs {
				switch {
				case s.resync || s.err != nil:
				case s.direct != nil:
					direct = append(direct, s.direct)
				default:
					s.evs = append(s.evs, resp.Events...)
					s.signal()
				}
			}
			f.mu.Unlock()
			// Direct subscribers (mirrors) apply events on this goroutine,
			// in order, without a hop through their own.
			for _, fn := range direct {
				fn(resp.Events, 0)
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return
		}
		if etcderr.Refused(werr) {
			f.fail(werr)
			return
		}
		f.mu.Lock()
		f.synced, f.hist = false, nil
		for s := range f.subs {
			s.resync, s.evs = true, nil
		}
		f.mu.Unlock()
	}
}

// record appends events to the history, evicting whole revisions from
// the front so that it holds every event above from. It lets the history
// grow to twice historyLen before it cuts it back to historyLen, so the
// copy is made once per historyLen events, not on every event. f.mu held.
func (f *Feed) record(evs []*clientv3.Event) {
	f.hist = append(f.hist, evs...)
	if len(f.hist) <= 2*historyLen {
		return
	}
	if over := len(f.hist) - historyLen; over > 0 {
		cut := f.hist[over-1].Kv.ModRevision
		i := over
		for i < len(f.hist) && f.hist[i].Kv.ModRevision == cut {
			i++
		}
		f.from = cut
		f.hist = append([]*clientv3.Event(nil), f.hist[i:]...)
	}
}

// started waits for a watch's created notification and returns the
// revision it starts after.
func started(ctx context.Context, wch clientv3.WatchChan) (int64, error) {
	select {
	case resp, ok := <-wch:
		if !ok {
			return 0, errors.New("watch closed before it started")
		}
		if err := resp.Err(); err != nil {
			return 0, err
		}
		if !resp.Created {
			return 0, errors.New("watch did not confirm its start")
		}
		return resp.Header.Revision, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Sub is one subscriber's inbox on a feed.
type Sub struct {
	f      *Feed
	c      chan struct{}
	evs    []*clientv3.Event
	resync bool  // events were missed: re-read once the feed is synced
	err    error // the feed ended for good
	since  int64 // every event above since is delivered (once not resync)
	// direct, when set, receives events at once on the feed's goroutine,
	// instead of through Take, and progress notifications (no events, the
	// revision up to which everything was sent); resyncs and errors still
	// come through Take.
	direct func(evs []*clientv3.Event, progress int64)
}

// Subscribe adds a subscriber that knows the watched state as of revision
// since (0: knows nothing). If the feed's history covers everything after
// since, the inbox starts with those events and no re-read is needed;
// otherwise the first Take says to re-read.
func (f *Feed) Subscribe(since int64) *Sub { return f.subscribe(since, nil) }

// subscribeDirect is Subscribe for a subscriber that takes events on the
// feed's own goroutine (fn must not block for long, nor call back into
// the feed); it starts needing a re-read.
func (f *Feed) subscribeDirect(fn func([]*clientv3.Event, int64)) *Sub { return f.subscribe(0, fn) }

// progress tells the direct subscribers that every event up to rev was
// delivered.
func (f *Feed) progress(rev int64) {
	f.mu.Lock()
	var direct []func([]*clientv3.Event, int64)
	for s := range f.subs {
		if s.direct != nil && !s.resync && s.err == nil {
			direct = append(direct, s.direct)
		}
	}
	f.mu.Unlock()
	for _, fn := range direct {
		fn(nil, rev)
	}
}

// RequestProgress asks etcd to tell the process's watches (this feed's
// among them) how far they are current, so a mirror can count itself
// current to a revision at which nothing in its range changed.
func (f *Feed) RequestProgress(ctx context.Context) error {
	return f.hub.cli.RequestProgress(clientv3.WithRequireLeader(ctx))
}

func (f *Feed) subscribe(since int64, direct func([]*clientv3.Event, int64)) *Sub {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &Sub{f: f, c: make(chan struct{}, 1), direct: direct}
	switch {
	case !f.running:
		s.err = etcderr.ErrClientClosed
		if f.hub.cli.Ctx().Err() == nil {
			s.err = errors.New("watch: feed stopped")
		}
	case f.synced && since > 0 && since >= f.from:
		s.since = since
		for _, ev := range f.hist {
			if ev.Kv.ModRevision > since {
				s.evs = append(s.evs, ev)
			}
		}
	default:
		s.resync = true
	}
	f.subs[s] = struct{}{}
	s.signal()
	return s
}

func (s *Sub) signal() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// C is signalled when Take has something new.
func (s *Sub) C() <-chan struct{} { return s.c }

// Take returns the events received since the last Take, in revision
// order. resync says events were missed: the caller must re-read the
// state (a read made now sees everything the feed will not deliver) and
// then skip events at or below the read's revision. err says the feed
// ended for good (ErrClientClosed, a refused watch).
func (s *Sub) Take() (evs []*clientv3.Event, resync bool, err error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.err != nil {
		return nil, false, s.err
	}
	if s.resync {
		if !s.f.synced {
			return nil, false, nil // the feed is reopening; wait for C
		}
		s.resync, s.evs, s.since = false, nil, s.f.from
		return nil, true, nil
	}
	evs, s.evs = s.evs, nil
	return evs, false, nil
}

// Since returns the revision after which the subscriber has been (or will
// be) given every event: what it subscribed with, or after a resync the
// revision the reopened watch started at. A reader that saw the state at
// a revision below Since may have missed events.
func (s *Sub) Since() int64 {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.since
}

// Close removes the subscriber.
func (s *Sub) Close() {
	s.f.mu.Lock()
	delete(s.f.subs, s)
	s.f.mu.Unlock()
}

// Compacted reports whether err says a revision is gone.
func Compacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
