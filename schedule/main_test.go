package schedule_test

import (
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

// world is fake time shared by many clocks, each skewed from it by an
// offset that may change as the world's time goes on. Advance moves it
// and fires every timer whose clock has reached it; nothing sleeps.
type world struct {
	mu     sync.Mutex
	base   time.Time
	timers []*timer
}

type timer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

func newWorld(base time.Time) *world { return &world{base: base} }

// Now is the world's true time.
func (w *world) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.base
}

// Advance moves true time on by d.
func (w *world) Advance(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.base = w.base.Add(d)
	kept := w.timers[:0]
	for _, t := range w.timers {
		if now := t.c.nowLocked(); !now.Before(t.at) {
			t.ch <- now
			continue
		}
		kept = append(kept, t)
	}
	w.timers = kept
}

// Clock returns a clock off the world's time by offset(true time).
func (w *world) Clock(offset func(time.Time) time.Duration) *fakeClock {
	return &fakeClock{w: w, offset: offset}
}

// fakeClock is a schedule.Clock on a world.
type fakeClock struct {
	w      *world
	offset func(time.Time) time.Duration
}

func (c *fakeClock) nowLocked() time.Time { return c.w.base.Add(c.offset(c.w.base)) }

func (c *fakeClock) Now() time.Time {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.nowLocked()
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	ch := make(chan time.Time, 1)
	now := c.nowLocked()
	if d <= 0 {
		ch <- now
		return ch
	}
	c.w.timers = append(c.w.timers, &timer{c: c, at: now.Add(d), ch: ch})
	return ch
}

func fixed(d time.Duration) func(time.Time) time.Duration {
	return func(time.Time) time.Duration { return d }
}

// until waits for cond, checked whenever ch (the fleet's change
// notifications) fires, for at most d of real time.
func until(t *testing.T, d time.Duration, what string, changed func() <-chan struct{}, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		ch := changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}
