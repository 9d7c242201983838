package shard_test

import (
	"context"
	"testing"
	"time"

	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"github.com/coord-go/coord/shard"
	"github.com/prometheus/client_golang/prometheus"
)

// metricValue sums the samples of family name whose labels include want.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	sample:
		for _, m := range mf.Metric {
			for k, v := range want {
				found := false
				for _, l := range m.Label {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue sample
				}
			}
			switch {
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

// A member's metrics follow its shards: owned now, acquired and released
// (a handoff) so far, and one convergence time per change it saw.
func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	r := root(t)
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	run := func(id string) func() {
		s, err := session.New(ctx, srv.Client(), session.WithPrefix(r), session.WithMetrics(m))
		if err != nil {
			t.Fatal(err)
		}
		mem, err := group.Join(ctx, s, "g", id, nil)
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- shard.New(mem, "m", shard.Count(8)).Run(rctx, func(ctx context.Context, _ *shard.Shard) error { <-ctx.Done(); return nil })
		}()
		return func() { stop(); <-done; s.Close() }
	}
	name := map[string]string{"name": "m"}
	ev := func(e string) map[string]string { return map[string]string{"name": "m", "event": e} }
	stopA := run("a")
	defer stopA()
	eventually(t, 20*time.Second, "a owns 8", func() bool { return metricValue(t, reg, "coord_shard_owned", name) == 8 })
	stopB := run("b")
	ob := shard.NewObserver(srv.Client(), "m", shard.WithPrefix(r))
	eventually(t, 20*time.Second, "converged over a and b", func() bool {
		tb, err := ob.Table(ctx)
		return err == nil && tb.Converged && len(tb.Members) == 2 && metricValue(t, reg, "coord_shard_owned", name) == 8
	})
	if got := metricValue(t, reg, "coord_shard_moves_total", ev(metrics.ShardAcquired)); got != 12 {
		t.Errorf("acquired %v, want 12 (8 by a, then 4 by b)", got)
	}
	if got := metricValue(t, reg, "coord_shard_moves_total", ev(metrics.ShardReleased)); got != 4 {
		t.Errorf("released %v, want 4 (a's handoffs to b)", got)
	}
	eventually(t, 10*time.Second, "each member recorded a convergence", func() bool {
		return metricValue(t, reg, "coord_shard_converge_seconds", name) >= 2
	})
	stopB()
	eventually(t, 20*time.Second, "a owns 8 again", func() bool { return metricValue(t, reg, "coord_shard_owned", name) == 8 })
	if got := metricValue(t, reg, "coord_shard_moves_total", ev(metrics.ShardLost)); got != 0 {
		t.Errorf("lost %v, want none: every end was a clean release", got)
	}
}
