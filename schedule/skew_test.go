package schedule_test

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
)

// TestSkewedFleetRunsEveryTickOnce runs 60 ticks of a 1 s schedule on
// five replicas whose clocks wander up to ±2 s from true time (each on a
// sine of its own period, so which replica's clock leads keeps changing),
// while replicas leave, crash and join: every tick runs exactly once, in
// order, with strictly increasing fencing tokens and sequence numbers,
// never earlier than its time by the replica's clock nor by more than the
// skew tolerance in true time. Time is fake: the test advances it in
// 100 ms steps and waits, after each, for every tick that the most
// advanced live clock has reached to be claimed.
func TestSkewedFleetRunsEveryTickOnce(t *testing.T) {
	t.Parallel()
	const amp = 2 * time.Second
	start := time.Date(2030, 1, 1, 0, 0, 0, 300_000_000, time.UTC)
	w := newWorld(start)
	f := newFleet(t, w, schedule.Every(time.Second),
		schedule.WithOverlap(schedule.OverlapAllow), schedule.WithSkewTolerance(amp))
	wander := func(i int) func(time.Time) time.Duration {
		period := []float64{17, 23, 29, 31, 37, 41}[i]
		return func(b time.Time) time.Duration {
			x := b.Sub(start).Seconds()
			return time.Duration(float64(amp) * math.Sin(2*math.Pi*x/period+1.3*float64(i)))
		}
	}
	live := map[string]*member{}
	join := func(i int) {
		name := fmt.Sprintf("r%d", i)
		live[name] = f.join(name, wander(i))
	}
	for i := range 5 {
		join(i)
	}
	// Who leaves, crashes and joins, at which second of true time.
	events := map[int]func(){
		12: func() { live["r0"].stop(); delete(live, "r0") },
		20: func() { live["r2"].kill(t); delete(live, "r2") },
		27: func() { join(5) },
		33: func() { live["r4"].stop(); delete(live, "r4") },
		41: func() { join(0) },
		48: func() { live["r1"].kill(t); delete(live, "r1") },
		55: func() { join(2) },
	}
	for step := 0; len(f.ran()) < 60; step++ {
		if step > 1200 {
			t.Fatalf("60 ticks did not run in 120 s of fake time: %d ran", len(f.ran()))
		}
		w.Advance(100 * time.Millisecond)
		if step%10 == 0 {
			if ev := events[step/10]; ev != nil {
				ev()
			}
		}
		// Every tick the most advanced live clock has reached (and its
		// stagger, at most 125 ms for the sixth replica, has passed) must
		// be claimed before time goes on, unless that replica joined after it.
		var ahead *member
		for _, m := range live {
			if ahead == nil || m.clock.Now().After(ahead.clock.Now()) {
				ahead = m
			}
		}
		target := ahead.clock.Now().Add(-150 * time.Millisecond).Truncate(time.Second)
		if !target.After(ahead.joined) {
			continue
		}
		until(t, 10*time.Second, "tick "+target.Format("15:04:05")+" run", f.changed, func() bool {
			rs := f.ran()
			return len(rs) > 0 && !rs[len(rs)-1].tick.Time.Before(target)
		})
	}

	rs := f.ran()
	first := rs[0].tick.Time
	by := map[string]int{}
	for i, r := range rs {
		want := first.Add(time.Duration(i) * time.Second)
		if !r.tick.Time.Equal(want) {
			t.Fatalf("run %d was tick %v, want %v (every tick once, in order): %v", i, r.tick.Time, want, ticksOf(rs))
		}
		if i > 0 && (r.tick.Token <= rs[i-1].tick.Token || r.tick.Seq != rs[i-1].tick.Seq+1) {
			t.Errorf("tick %v: token %d seq %d after token %d seq %d", r.tick.Time, r.tick.Token, r.tick.Seq, rs[i-1].tick.Token, rs[i-1].tick.Seq)
		}
		if r.local.Before(r.tick.Time) {
			t.Errorf("tick %v started at %v by %s's own clock: early", r.tick.Time, r.local, r.replica)
		}
		if r.world.Before(r.tick.Time.Add(-amp)) {
			t.Errorf("tick %v started at true time %v: earlier than the skew tolerance allows", r.tick.Time, r.world)
		}
		by[r.replica]++
	}
	if len(by) < 3 {
		t.Errorf("the ticks ran on %v: the clocks' lead should have moved between replicas", by)
	}
	t.Logf("60 ticks ran once each; by replica: %v", by)
}

// wallStepClock is the host's clock with its wall time moved by a
// settable step, as NTP or an operator steps it: timers still run on real
// (monotonic) time. It counts the waits asked of it.
type wallStepClock struct {
	step  atomic.Int64
	waits atomic.Int64
}

func (c *wallStepClock) Now() time.Time { return time.Now().Add(time.Duration(c.step.Load())) }

func (c *wallStepClock) After(d time.Duration) <-chan time.Time {
	c.waits.Add(1)
	return time.After(d)
}

// A wall clock stepped forward while a replica sleeps toward a tick an
// hour off does not make the tick an hour late: the replica looks at its
// clock again within a nap and runs the tick that is now due.
func TestWallClockStepForwardRunsTheTickThatIsDue(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 30*time.Second)
	clk := &wallStepClock{}
	// Next tick: the top of the next hour by the clock, far enough off
	// that the replica goes to sleep toward it.
	if now := clk.Now(); now.Sub(now.Truncate(time.Hour)) > 55*time.Minute {
		clk.step.Store(int64(-10 * time.Minute))
	}
	next := clk.Now().Truncate(time.Hour).Add(time.Hour)
	sc := schedule.New(srv.Client(), etcdtest.Name(t), schedule.Cron("0 * * * *"),
		schedule.WithClock(clk), schedule.WithNap(50*time.Millisecond))
	s, err := session.New(ctx, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ran := make(chan time.Time, 4)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go sc.Run(rctx, s, func(_ context.Context, tk schedule.Tick) error {
		ran <- tk.Time
		return nil
	})
	// Asleep toward the tick: it asked the clock for a wait.
	for clk.waits.Load() == 0 {
		select {
		case tick := <-ran:
			if !tick.Before(next) {
				t.Fatalf("ran tick %v before the clock reached it", tick)
			}
		case <-ctx.Done():
			t.Fatal("the replica never waited on its clock")
		case <-time.After(5 * time.Millisecond):
		}
	}
	// Step the wall clock to just past the tick.
	clk.step.Add(int64(next.Sub(clk.Now()) + 100*time.Millisecond))
	deadline := time.After(5 * time.Second)
	for {
		select {
		case tick := <-ran:
			if tick.Equal(next) {
				return
			}
		case <-deadline:
			t.Fatalf("tick %v did not run within 5 s of the wall clock stepping past it", next)
		}
	}
}
