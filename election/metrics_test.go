package election_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
)

// gauge reads one metric of m with label name=name, or -1 if absent.
func gauge(t *testing.T, m *metrics.Metrics, metric, name string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == name {
					if g := mm.GetGauge(); g != nil {
						return g.GetValue()
					}
					return mm.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

func TestMetricsFollowLeadership(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	m := metrics.New()
	e := election.New(newSession(t, srv.Client(), r, session.WithMetrics(m)), "metered")
	if err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if g := gauge(t, m, "coord_election_is_leader", "metered"); g != 1 {
		t.Fatalf("is_leader = %v while leading", g)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if g := gauge(t, m, "coord_election_is_leader", "metered"); g != 0 {
		t.Fatalf("is_leader = %v after Resign", g)
	}
	// A loss is reported too, not only a resignation.
	if err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().Delete(ctx, string(candidates(t, r)[0].Key)); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(e.Done(), 5*time.Second) {
		t.Fatal("Done open after the key was deleted")
	}
	eventually(t, 5*time.Second, "is_leader drops to 0 on loss", func() bool {
		return gauge(t, m, "coord_election_is_leader", "metered") == 0
	})
	if g := gauge(t, m, "coord_election_transitions_total", "metered"); g != 4 {
		t.Fatalf("transitions_total = %v, want 4", g)
	}
	if g := gauge(t, m, "coord_waiting", "metered"); g != 0 {
		t.Fatalf("waiting = %v after the campaigns", g)
	}
}
