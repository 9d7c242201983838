package ratelimit_test

import (
	"container/heap"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/ratelimit"
)

// simClock is a ratelimit.Clock that moves only when the test says so,
// and the test moves it only when every goroutine taking part waits (on
// it, or inside a limiter): a limiter reports its goroutines through
// ratelimit.SetTracker, the test's own through Track. So an etcd round
// trip takes no simulated time at all, a run of 30 simulated seconds
// takes what its Txns take, and no test sleeps to synchronize: it waits
// for the condition "everyone waits".
type simClock struct {
	mu     sync.Mutex
	cond   *sync.Cond
	now    time.Time
	timers timerHeap
	seq    int64
	busy   int
	steps  int
	polls  int
}

type simTimer struct {
	at      time.Time
	seq     int64
	f       func()
	idx     int
	stopped bool
}

type timerHeap []*simTimer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].idx = i; h[j].idx = j }
func (h *timerHeap) Push(x any)   { t := x.(*simTimer); t.idx = len(*h); *h = append(*h, t) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	t.idx = -1
	return t
}

func newSimClock(start time.Time) *simClock {
	c := &simClock{now: start}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc never calls f at once, even for d ≤ 0: its caller may hold a
// lock f takes. f runs on the goroutine that moves the clock.
func (c *simClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &simTimer{at: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	heap.Push(&c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.stopped || t.idx < 0 {
			return false
		}
		t.stopped = true
		heap.Remove(&c.timers, t.idx)
		return true
	}
}

// Track adds delta to the goroutines taking part that are not waiting.
func (c *simClock) Track(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy += delta
	if c.busy < 0 {
		panic("simClock: more wakes than waits")
	}
	if c.busy == 0 {
		c.cond.Broadcast()
	}
}

// quiet waits until every goroutine taking part waits, or until the
// real-time deadline (a stall: something waits on what never comes).
func (c *simClock) quiet(deadline time.Time) bool {
	stop := time.AfterFunc(time.Until(deadline), func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.busy > 0 && time.Now().Before(deadline) {
		c.cond.Wait()
	}
	return c.busy == 0
}

// step fires the timers that are due, or else moves the clock to the
// earliest timer (no further than limit) and fires the timers due then.
func (c *simClock) step(limit time.Time) {
	c.mu.Lock()
	if len(c.timers) == 0 || c.timers[0].at.After(limit) {
		if c.now.Before(limit) {
			c.now = limit
		}
		c.mu.Unlock()
		return
	}
	if at := c.timers[0].at; at.After(c.now) {
		c.now = at
	}
	c.steps++
	var due []*simTimer
	for len(c.timers) > 0 && !c.timers[0].at.After(c.now) {
		due = append(due, heap.Pop(&c.timers).(*simTimer))
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// sleepUntil is a tracked wait of a test goroutine for the clock to
// reach t, or ctx to end.
func (c *simClock) sleepUntil(ctx context.Context, t time.Time) error {
	ch := make(chan struct{})
	var once sync.Once
	wake := func() { once.Do(func() { c.Track(1); close(ch) }) }
	stop := c.AfterFunc(t.Sub(c.Now()), wake)
	stopC := context.AfterFunc(ctx, wake)
	c.Track(-1)
	<-ch
	stop()
	stopC()
	if c.Now().Before(t) {
		return ctx.Err()
	}
	return nil
}

// go runs f as a goroutine taking part.
func (c *simClock) goTracked(f func()) {
	c.Track(1)
	go func() {
		defer c.Track(-1)
		f()
	}()
}

// sim drives a simClock over limiters: the clock moves once everyone
// waits and every limiter that follows the shared state has seen the
// latest state any of them wrote (a watch event still on its way could
// let a waiting reservation loop go).
type sim struct {
	t        *testing.T
	clock    *simClock
	mu       sync.Mutex
	limiters []*ratelimit.Limiter
}

func (s *sim) add(l *ratelimit.Limiter) {
	ratelimit.SetTracker(l, s.clock.Track)
	s.mu.Lock()
	s.limiters = append(s.limiters, l)
	s.mu.Unlock()
}

func (s *sim) caughtUp() bool {
	s.mu.Lock()
	ls := append([]*ratelimit.Limiter(nil), s.limiters...)
	s.mu.Unlock()
	var top int64
	for _, l := range ls {
		_, _, mod, _ := ratelimit.SyncState(l)
		top = max(top, mod)
	}
	for _, l := range ls {
		if active, loaded, _, seen := ratelimit.SyncState(l); active && (!loaded || seen < top) {
			return false
		}
	}
	return true
}

// settle waits until the clock may move.
func (s *sim) settle() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !s.clock.quiet(deadline) {
			s.t.Fatalf("simulation stalled at %v: a goroutine neither runs nor waits on the clock", s.clock.Now())
		}
		if s.caughtUp() && s.clock.quiet(time.Now()) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("simulation stalled at %v: a mirror never caught up", s.clock.Now())
		}
		s.clock.mu.Lock()
		s.clock.polls++
		s.clock.mu.Unlock()
		time.Sleep(100 * time.Microsecond) // a watch event on its way
	}
}

// runUntil moves the clock to t, timer by timer.
func (s *sim) runUntil(t time.Time) {
	s.t.Helper()
	for s.clock.Now().Before(t) {
		s.settle()
		s.clock.step(t)
	}
	s.settle()
}
