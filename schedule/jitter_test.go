package schedule_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/coord-go/coord/schedule"
)

// TestJitter: every replica delays a tick by the same jitter, within
// [0, d), different from tick to tick; the tick starts once that delay
// is over by the claimer's clock, and not much later; Tick.Time stays the
// scheduled time.
func TestJitter(t *testing.T) {
	t.Parallel()
	const d = 600 * time.Millisecond
	w := newWorld(at(0).Add(100 * time.Millisecond))
	f := newFleet(t, w, schedule.Every(time.Second), schedule.WithJitter(d), schedule.WithSkewTolerance(100*time.Millisecond))
	other := schedule.New(srv.Client(), f.name, f.spec, f.opts...) // another replica's view
	spread := map[time.Duration]bool{}
	for i := 1; i <= 8; i++ {
		j := schedule.JitterOf(other, at(i))
		if j < 0 || j >= d || j != schedule.JitterOf(schedule.New(srv.Client(), f.name, f.spec, f.opts...), at(i)) {
			t.Fatalf("tick %d: jitter %v, want the same on every replica, in [0, %v)", i, j, d)
		}
		spread[j] = true
	}
	if len(spread) < 4 {
		t.Errorf("8 ticks got only %d distinct jitters: %v", len(spread), spread)
	}
	if a, b := schedule.JitterOf(other, at(1)), schedule.JitterOf(schedule.New(srv.Client(), f.name+"-2", f.spec, f.opts...), at(1)); a == b {
		t.Logf("note: two names drew the same jitter %v for one tick", a)
	}

	f.join("a", fixed(0))
	f.join("b", fixed(-50*time.Millisecond))
	for i := 1; i <= 6; i++ {
		due := at(i).Add(schedule.JitterOf(other, at(i)))
		// Step 50 ms at a time; once the first replica's clock is 50 ms
		// past the due time, the tick must be claimed before time goes on.
		for {
			w.Advance(50 * time.Millisecond)
			if !w.Now().Before(due.Add(50 * time.Millisecond)) {
				break
			}
		}
		f.decided(t, at(i))
		f.idle(t) // fn has run, by the clock as it was at the claim
	}
	rs := f.ran()
	if len(rs) < 5 {
		t.Fatalf("ran %v, want ticks 1 to 6 (or 2 to 6: the first tick after the start may be the start's own)", ticksOf(rs))
	}
	for k, r := range rs {
		if k > 0 && !r.tick.Time.Equal(rs[k-1].tick.Time.Add(time.Second)) {
			t.Fatalf("ran %v, want every tick once, in order", ticksOf(rs))
		}
		if !r.tick.Time.Equal(r.tick.Time.Truncate(time.Second)) {
			t.Errorf("Tick.Time %v: want the scheduled time, without the jitter", r.tick.Time)
		}
		due := r.tick.Time.Add(schedule.JitterOf(other, r.tick.Time))
		if late := r.local.Sub(due); late < 0 || late > 100*time.Millisecond {
			t.Errorf("tick %v (due %v with its jitter) started by %s at %v by its clock: %v late, want within [0, 100ms]",
				r.tick.Time, due, r.replica, r.local, late)
		}
	}
}

// TestHistoryKeepsLastN: with WithHistory(3), after 6 runs History
// returns the 3 newest, newest first, and etcd holds no more records
// than that: the schedule's keys do not grow with its runs.
func TestHistoryKeepsLastN(t *testing.T) {
	t.Parallel()
	w := newWorld(at(0).Add(100 * time.Millisecond))
	f := newFleet(t, w, schedule.Every(time.Second), schedule.WithHistory(3), schedule.WithSkewTolerance(100*time.Millisecond))
	f.join("a", fixed(0))
	f.join("b", fixed(-50*time.Millisecond))
	for i := 1; i <= 6; i++ {
		runTo(t, f, i)
		f.idle(t)
	}
	h := f.history(t)
	if len(h) != 3 {
		t.Fatalf("history of %d runs, want 3: %+v", len(h), h)
	}
	for k, r := range h {
		if want := int64(6 - k); r.Seq != want || r.Outcome != schedule.Succeeded || r.Replica == "" || r.Start.IsZero() || r.End.Before(r.Start) {
			t.Errorf("history[%d] = %+v, want seq %d, succeeded, with replica, start and end", k, r, want)
		}
	}
	sp, err := keys.New(keys.DefaultRoot, keys.KindSchedule, f.name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(etcdtest.Context(t, 5*time.Second), sp.Part("h"), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 3 {
		t.Errorf("%d history records in etcd, want 3", resp.Count)
	}
}
