package semaphore_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
)

// metricValue sums the samples of one metric family (counter, gauge, or
// histogram sample count) across its label sets.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				v += m.Counter.GetValue()
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			case m.Histogram != nil:
				v += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return v
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	s, err := session.New(ctxT(t, 10*time.Second), srv.Client(), session.WithPrefix(root(t)), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t, 30*time.Second)
	sem := semaphore.New(s, "m", 3)
	p := mustAcquire(t, sem, 2)
	if v := metricValue(t, reg, "coord_semaphore_permits_held"); v != 2 {
		t.Fatalf("permits_held = %v while holding 2", v)
	}
	w := acquireAsync(ctx, sem, 2)
	waitFor(t, "a waiter in the gauge", func() bool { return metricValue(t, reg, "coord_waiting") == 1 })
	mustRelease(t, p)
	r := within(t, w, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.p)
	for name, want := range map[string]float64{
		"coord_acquisitions_total":     2,
		"coord_wait_seconds":           2,
		"coord_hold_seconds":           2,
		"coord_waiting":                0,
		"coord_semaphore_permits_held": 0,
		"coord_lost_total":             0,
	} {
		if v := metricValue(t, reg, name); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}
