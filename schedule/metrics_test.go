package schedule_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestMetrics: the replicas' runs by outcome, ticks skipped by reason,
// run durations and lateness (start − scheduled time, by the runner's
// clock) reach the sessions' Metrics, each counted once for the fleet.
func TestMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	w := newWorld(at(0).Add(100 * time.Millisecond))
	f := newFleet(t, w, schedule.Every(time.Second), schedule.WithOverlap(schedule.OverlapSkip), schedule.WithSkewTolerance(100*time.Millisecond))
	f.sessOpts = []session.Option{session.WithMetrics(m)}
	release := make(chan struct{})
	f.job = func(ctx context.Context, _ string, tk schedule.Tick) error {
		if !tk.Time.Equal(at(1)) {
			return nil
		}
		select { // tick 1 goes on past tick 2, then fails
		case <-release:
			return errors.New("boom")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.join("a", fixed(0))
	f.join("b", fixed(-50*time.Millisecond))
	runTo(t, f, 1)
	until(t, 10*time.Second, "tick 1 started", f.changed, func() bool { return len(f.ran()) == 1 })
	runTo(t, f, 2) // skipped: tick 1 is still going
	close(release)
	f.idle(t)
	runTo(t, f, 3)
	f.idle(t)
	if rs := f.ran(); len(rs) != 2 {
		t.Fatalf("ran %v, want ticks 1 and 3", ticksOf(rs))
	}
	if h := f.history(t); len(h) != 2 || h[1].Outcome != schedule.Failed || h[1].Error != "boom" || h[1].Duration() < time.Second {
		t.Errorf("history %+v, want tick 1 failed with boom after more than 1 s, then tick 3", h)
	}

	get := func(name string, labels map[string]string) *dto.Metric { return metricOf(t, reg, name, labels) }
	n := map[string]string{"name": f.name}
	with := func(k, v string) map[string]string { return map[string]string{"name": f.name, k: v} }
	// A run is counted once its record's Txn has returned to the replica
	// that ran it, a moment after others can read the record: wait for
	// both runs to be counted, then check that each is counted once.
	eventually(t, 10*time.Second, "both runs counted", func() bool {
		ok, failed := get("coord_schedule_runs_total", with("outcome", "succeeded")), get("coord_schedule_runs_total", with("outcome", "failed"))
		return ok.GetCounter().GetValue() >= 1 && failed.GetCounter().GetValue() >= 1
	})
	for _, c := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"coord_schedule_runs_total", with("outcome", "failed"), 1},
		{"coord_schedule_runs_total", with("outcome", "succeeded"), 1},
		{"coord_schedule_skipped_total", with("reason", "overlap"), 1},
	} {
		mt := get(c.metric, c.labels)
		if mt == nil || mt.GetCounter().GetValue() != c.want {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, mt.GetCounter().GetValue(), c.want)
		}
	}
	if mt := get("coord_schedule_lateness_seconds", n); mt == nil || mt.GetHistogram().GetSampleCount() != 2 ||
		mt.GetHistogram().GetSampleSum() < 0 || mt.GetHistogram().GetSampleSum() > 0.5 {
		t.Errorf("lateness %v: want 2 samples, each within the 100 ms steps of fake time", mt.GetHistogram())
	}
	if mt := get("coord_schedule_run_seconds", n); mt == nil || mt.GetHistogram().GetSampleCount() != 1 || mt.GetHistogram().GetSampleSum() < 1 {
		t.Errorf("run duration %v: want tick 1's (over 1 s; tick 3 took no fake time)", mt.GetHistogram())
	}
}

// metricOf returns the metric called name in reg whose labels include
// labels, or nil.
func metricOf(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
	next:
		for _, mt := range fam.GetMetric() {
			have := map[string]string{}
			for _, l := range mt.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return mt
		}
	}
	return nil
}

// TestEarlyClaimCounted: while the replicas' clocks are within the skew
// tolerance no claim is counted as early; a replica whose clock runs 3 s
// ahead (the tolerance is 500 ms) claims ticks that the others' clocks
// have not reached, and they count it in
// coord_schedule_early_claims_total: the clock assumption is checked, not
// only stated.
func TestEarlyClaimCounted(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	w := newWorld(at(0).Add(100 * time.Millisecond))
	f := newFleet(t, w, schedule.Every(time.Second), schedule.WithSkewTolerance(500*time.Millisecond))
	f.sessOpts = []session.Option{session.WithMetrics(m)}
	f.join("a", fixed(0))
	f.join("b", fixed(-300*time.Millisecond))
	early := func() float64 {
		return metricOf(t, reg, "coord_schedule_early_claims_total", map[string]string{"name": f.name}).GetCounter().GetValue()
	}
	for i := 1; i <= 3; i++ {
		for w.Now().Before(at(i).Add(400 * time.Millisecond)) {
			w.Advance(100 * time.Millisecond)
		}
		f.decided(t, at(i))
		f.seen(t)
	}
	if n := early(); n != 0 {
		t.Fatalf("%v early claims counted with clocks 300 ms apart and a 500 ms tolerance", n)
	}
	f.join("fast", fixed(3*time.Second))
	eventually(t, 10*time.Second, "an early claim counted", func() bool {
		if early() > 0 {
			return true
		}
		w.Advance(100 * time.Millisecond)
		return false
	})
	for _, r := range f.ran() {
		if r.replica != "fast" && r.local.Before(r.tick.Time) {
			t.Errorf("replica %s started tick %v at %v by its own clock: early", r.replica, r.tick.Time, r.local)
		}
	}
}
