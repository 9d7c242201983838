package schedule_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/schedule"
)

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// at is the i-th tick of a 1 s schedule after epoch.
func at(i int) time.Time { return epoch.Add(time.Duration(i) * time.Second) }

// runTo advances the world to 100 ms past tick i and waits until it is
// decided.
func runTo(t *testing.T, f *fleet, i int) {
	t.Helper()
	for f.w.Now().Before(at(i).Add(100 * time.Millisecond)) {
		f.w.Advance(100 * time.Millisecond)
	}
	f.decided(t, at(i))
}

func seconds(ts []time.Time) []int {
	out := make([]int, len(ts))
	for i, t := range ts {
		out[i] = int(t.Sub(epoch) / time.Second)
	}
	return out
}

// TestCatchup stops every replica after tick 3, lets ticks 4 to 8 pass,
// and starts two new replicas 500 ms after tick 8: each policy runs what
// it says, then tick 9 as usual.
func TestCatchup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy schedule.CatchupPolicy
		opts   []schedule.Option
		want   []int // ticks run after the outage
		missed int64
	}{
		{schedule.CatchupLatest, nil, []int{8, 9}, 4},
		{schedule.CatchupSkip, []schedule.Option{schedule.WithGrace(300 * time.Millisecond)}, []int{9}, 5},
		{schedule.CatchupAll, []schedule.Option{schedule.WithCatchupWindow(3200 * time.Millisecond)}, []int{6, 7, 8, 9}, 2},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			w := newWorld(at(0).Add(100 * time.Millisecond))
			opts := append([]schedule.Option{schedule.WithCatchup(tc.policy), schedule.WithSkewTolerance(100 * time.Millisecond)}, tc.opts...)
			f := newFleet(t, w, schedule.Every(time.Second), opts...)
			a, b := f.join("a", fixed(0)), f.join("b", fixed(-50*time.Millisecond))
			for i := 1; i <= 3; i++ {
				runTo(t, f, i)
			}
			f.idle(t)
			a.stop()
			b.stop()
			before := len(f.ran())
			for w.Now().Before(at(8).Add(500 * time.Millisecond)) {
				w.Advance(100 * time.Millisecond)
			}
			f.join("c", fixed(0))
			f.join("d", fixed(-50*time.Millisecond))
			runTo(t, f, 8)
			f.idle(t) // CatchupAll runs 6, 7, 8 one after the other
			runTo(t, f, 9)
			until(t, 10*time.Second, "tick 9 run", f.changed, func() bool {
				rs := f.ran()
				return len(rs) > 0 && rs[len(rs)-1].tick.Time.Equal(at(9))
			})
			if got := seconds(ticksOf(f.ran()[before:])); !slices.Equal(got, tc.want) {
				t.Errorf("after the outage ran ticks %v, want %v", got, tc.want)
			}
			if got := f.status(t).Skipped[schedule.SkipMissed]; got != tc.missed {
				t.Errorf("skipped %d ticks as missed, want %d", got, tc.missed)
			}
		})
	}
}

// TestOverlap makes the runs of ticks 1 to 3 last until the test lets
// them go (or their context ends), so tick 2 and 3 come while tick 1 is
// still going, then checks what each policy started and recorded.
func TestOverlap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy   schedule.OverlapPolicy
		started  []int
		outcomes map[int64]schedule.Outcome // by seq
		skipped  int64
	}{
		{schedule.OverlapSkip, []int{1, 4}, map[int64]schedule.Outcome{1: schedule.Succeeded, 2: schedule.Succeeded}, 2},
		{schedule.OverlapBuffer, []int{1, 2, 4}, map[int64]schedule.Outcome{1: schedule.Succeeded, 2: schedule.Succeeded, 3: schedule.Succeeded}, 1},
		{schedule.OverlapAllow, []int{1, 2, 3, 4}, map[int64]schedule.Outcome{1: schedule.Succeeded, 2: schedule.Succeeded, 3: schedule.Succeeded, 4: schedule.Succeeded}, 0},
		{schedule.OverlapCancel, []int{1, 2, 3, 4}, map[int64]schedule.Outcome{1: schedule.Cancelled, 2: schedule.Cancelled, 3: schedule.Succeeded, 4: schedule.Succeeded}, 0},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			t.Parallel()
			w := newWorld(at(0).Add(100 * time.Millisecond))
			f := newFleet(t, w, schedule.Every(time.Second), schedule.WithOverlap(tc.policy), schedule.WithSkewTolerance(100*time.Millisecond))
			release := make(chan struct{})
			var mu sync.Mutex
			var intervals [][2]time.Time // true start and end of each run
			f.job = func(ctx context.Context, _ string, tk schedule.Tick) error {
				start := w.Now()
				defer func() {
					mu.Lock()
					intervals = append(intervals, [2]time.Time{start, w.Now()})
					mu.Unlock()
				}()
				if tk.Time.After(at(3)) {
					return nil
				}
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			f.join("a", fixed(0))
			f.join("b", fixed(-50*time.Millisecond))
			runTo(t, f, 1)
			until(t, 10*time.Second, "tick 1 started", f.changed, func() bool { return len(f.ran()) == 1 })
			runTo(t, f, 2)
			if tc.policy == schedule.OverlapCancel {
				// Tick 1's run is cancelled, and tick 2's starts once it ended.
				until(t, 10*time.Second, "tick 2 started", f.changed, func() bool { return len(f.ran()) == 2 })
			}
			runTo(t, f, 3)
			if tc.policy == schedule.OverlapCancel {
				until(t, 10*time.Second, "tick 3 started", f.changed, func() bool { return len(f.ran()) == 3 })
			}
			w.Advance(100 * time.Millisecond) // tick 1's run goes on past tick 3
			close(release)
			f.idle(t)
			runTo(t, f, 4)
			f.idle(t)
			got0 := seconds(ticksOf(f.ran()))
			slices.Sort(got0) // runs start on goroutines of their own
			if got := got0; !slices.Equal(got, tc.started) {
				t.Errorf("started ticks %v, want %v", got, tc.started)
			}
			got := map[int64]schedule.Outcome{}
			for _, r := range f.history(t) {
				got[r.Seq] = r.Outcome
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.outcomes) {
				t.Errorf("outcomes by seq %v, want %v", got, tc.outcomes)
			}
			if n := f.status(t).Skipped[schedule.SkipOverlap]; n != tc.skipped {
				t.Errorf("skipped %d ticks for overlap, want %d", n, tc.skipped)
			}
			if tc.policy != schedule.OverlapAllow {
				mu.Lock()
				defer mu.Unlock()
				slices.SortFunc(intervals, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
				for i := 1; i < len(intervals); i++ {
					if intervals[i][0].Before(intervals[i-1][1]) {
						t.Errorf("runs overlapped under %v: %v", tc.policy, intervals)
					}
				}
			}
		})
	}
}

// TestCrash kills the replica running tick 1 (its lease revoked, as its
// death past the TTL would): the other replica records the crash, and
// under CrashRerun runs the tick once more, with a newer token.
func TestCrash(t *testing.T) {
	t.Parallel()
	for _, policy := range []schedule.CrashPolicy{schedule.CrashLeave, schedule.CrashRerun} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			w := newWorld(at(0).Add(100 * time.Millisecond))
			f := newFleet(t, w, schedule.Every(time.Second), schedule.WithCrash(policy), schedule.WithSkewTolerance(100*time.Millisecond))
			f.job = func(ctx context.Context, replica string, tk schedule.Tick) error {
				if replica == "doomed" {
					<-ctx.Done() // runs until its session ends
					return ctx.Err()
				}
				return nil
			}
			doomed := f.join("doomed", fixed(200*time.Millisecond)) // ahead: it claims tick 1
			f.join("other", fixed(0))
			runTo(t, f, 1)
			until(t, 10*time.Second, "tick 1 started", f.changed, func() bool { return len(f.ran()) == 1 })
			doomed.kill(t)
			if policy == schedule.CrashRerun {
				until(t, 10*time.Second, "tick 1 run again", f.changed, func() bool { return len(f.ran()) == 2 })
			}
			eventually(t, 10*time.Second, "the crash recorded", func() bool {
				h := f.history(t)
				return len(h) == 1 && h[0].Outcome != schedule.Running
			})
			runTo(t, f, 2)
			f.idle(t)
			rs := f.ran()
			h := f.history(t)
			switch policy {
			case schedule.CrashLeave:
				if len(rs) != 2 || !rs[1].tick.Time.Equal(at(2)) {
					t.Fatalf("runs %v, want tick 1 once (crashed) then tick 2", ticksOf(rs))
				}
				if h[1].Outcome != schedule.Crashed || h[1].Replica != "doomed" || h[1].Token != rs[0].tick.Token {
					t.Errorf("tick 1's record %+v, want crashed on doomed with its token", h[1])
				}
			case schedule.CrashRerun:
				if len(rs) != 3 || rs[1].replica != "other" || !rs[1].tick.Time.Equal(at(1)) || rs[1].tick.Attempt != 2 ||
					rs[1].tick.Seq != rs[0].tick.Seq || rs[1].tick.Token <= rs[0].tick.Token || !rs[2].tick.Time.Equal(at(2)) {
					t.Fatalf("runs %+v, want tick 1 on doomed, tick 1 again on other (attempt 2, same seq, newer token), then tick 2", rs)
				}
				if h[1].Outcome != schedule.Succeeded || h[1].Attempt != 2 {
					t.Errorf("tick 1's record %+v, want succeeded at attempt 2", h[1])
				}
			}
			if h[0].Seq != 2 || h[0].Outcome != schedule.Succeeded {
				t.Errorf("tick 2's record %+v", h[0])
			}
		})
	}
}
