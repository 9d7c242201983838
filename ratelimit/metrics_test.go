package ratelimit_test

import (
	"testing"

	"github.com/coord-go/coord/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// gatherValue sums the samples of one metric family whose labels include
// labels (counter, gauge, or histogram sample count).
func gatherValue(t testing.TB, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, s := range mf.GetMetric() {
			for k, want := range labels {
				found := false
				for _, lp := range s.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == want {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case s.Counter != nil:
				v += s.Counter.GetValue()
			case s.Gauge != nil:
				v += s.Gauge.GetValue()
			case s.Histogram != nil:
				v += float64(s.Histogram.GetSampleCount())
			}
		}
	}
	return v
}
