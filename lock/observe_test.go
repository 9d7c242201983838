package lock_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func counterValue(t *testing.T, reg *prometheus.Registry, metric, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == name {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestLossIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	var logs syncBuf
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s := newSession(t, session.WithMetrics(m), session.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	name := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	mu := lock.NewMutex(s, name)
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, reg, "coord_acquisitions_total", name); got != 1 {
		t.Fatalf("acquisitions = %v, want 1", got)
	}
	done := mu.Done()
	sp, _ := keys.New(s.Prefix(), keys.KindLock, name)
	if _, err := srv.Client().Delete(ctx, sp.Part("w"), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, done, 2*time.Second, "Done after the key was deleted")
	eventually(t, 2*time.Second, "loss logged at warn and counted", func() bool {
		return strings.Contains(logs.String(), "level=WARN msg=\"coord lock lost\"") &&
			counterValue(t, reg, "coord_lost_total", name) == 1
	})
}
