package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value finds one series in a gathered registry: name and label pairs.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, lp := range m.Label {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return sample(mf.GetType(), m)
		}
	}
	return -1
}

func sample(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.Counter.GetValue()
	case dto.MetricType_GAUGE:
		return m.Gauge.GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

func TestMetricsFromRealOperations(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s, err := session.New(ctx, srv.Client(), session.WithMetrics(m), session.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	mu := lock.NewMutex(s, "backup")
	for i := 0; i < 3; i++ {
		if err := mu.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := mu.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e := election.New(s, "api")
	if err := e.Campaign(ctx, "me"); err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "coord_election_is_leader", "name", "api"); got != 1 {
		t.Errorf("is_leader while leading = %v", got)
	}
	if got := value(t, reg, "coord_holding", "kind", "election", "name", "api"); got != 1 {
		t.Errorf("holding while leading = %v", got)
	}
	if got := value(t, reg, "coord_hold_start_timestamp_seconds", "kind", "election", "name", "api"); time.Since(time.Unix(int64(got), 0)) > time.Minute {
		t.Errorf("hold start %v is not now", got)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := semaphore.New(s, "gpu", 4).Acquire(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := value(t, reg, "coord_semaphore_permits_held", "name", "gpu"); got != 3 {
		t.Errorf("permits_held = %v, want 3", got)
	}
	p.Release(ctx)
	q := queue.New(srv.Client(), "jobs", queue.WithMetrics(m))
	for i := 0; i < 2; i++ {
		q.Enqueue(ctx, []byte("x"))
	}
	msg, err := q.Claim(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	msg.Ack(ctx)
	msg, _ = q.Claim(ctx, s)
	msg.Nack(ctx, 0)

	// A lost lock: its session's lease revoked by an operator.
	s2, err := session.New(ctx, srv.Client(), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	lost := lock.NewMutex(s2, "cron")
	if err := lost.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Client().Revoke(ctx, s2.Lease())
	<-lost.Done()
	lost.Unlock(ctx) // reports the loss
	<-s2.Done()

	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"coord_acquisitions_total", []string{"kind", "lock", "name", "backup"}, 3},
		{"coord_wait_seconds", []string{"kind", "lock", "name", "backup"}, 3},
		{"coord_hold_seconds", []string{"kind", "lock", "name", "backup"}, 3},
		{"coord_lost_total", []string{"kind", "lock", "name", "cron"}, 1},
		{"coord_holding", []string{"kind", "lock", "name", "backup"}, 0},
		{"coord_holding", []string{"kind", "lock", "name", "cron"}, 0},
		{"coord_holding", []string{"kind", "semaphore", "name", "gpu"}, 0},
		{"coord_election_transitions_total", []string{"name", "api"}, 2},
		{"coord_election_is_leader", []string{"name", "api"}, 0},
		{"coord_semaphore_permits_held", []string{"name", "gpu"}, 0},
		{"coord_queue_messages_total", []string{"name", "jobs", "event", "enqueued"}, 2},
		{"coord_queue_messages_total", []string{"name", "jobs", "event", "acked"}, 1},
		{"coord_queue_messages_total", []string{"name", "jobs", "event", "nacked"}, 1},
		{"coord_queue_messages_total", []string{"name", "jobs", "event", "claimed"}, 2},
		{"coord_queue_claim_to_ack_seconds", []string{"name", "jobs"}, 1},
		{"coord_session_lost_total", nil, 1},
	}
	for _, c := range checks {
		if got := value(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(t, reg, "coord_session_keepalive_latency_seconds"); got < 0 {
		t.Errorf("keepalive latency not exported")
	}
}

func TestWithoutNameLabel(t *testing.T) {
	m := metrics.New(metrics.WithoutNameLabel())
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	m.Acquired("lock", "user-12345", time.Millisecond)
	m.Acquired("lock", "user-67890", time.Millisecond)
	if got := value(t, reg, "coord_acquisitions_total", "kind", "lock", "name", ""); got != 2 {
		t.Fatalf("acquisitions without names = %v, want 2 in one series", got)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, s := range mf.Metric {
			for _, l := range s.Label {
				if strings.HasPrefix(l.GetValue(), "user-") {
					t.Fatalf("name label leaked: %v", l)
				}
			}
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Acquired("lock", "x", time.Second) // must not panic
	m.QueueEvent("q", metrics.QueueAcked)
	m.SessionLost()
}
