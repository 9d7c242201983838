package semaphore_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A Release whose answer is lost, retried, is a clean release: nil, and
// no lost permit counted (the retry used to find its own earlier delete
// and report ErrLost).
func TestRetriedReleaseIsNotALoss(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithPrefix(root(t)), session.WithTTL(20*time.Second), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sem := semaphore.New(s, "retried", 2)
	permit := mustAcquire(t, sem, 1)
	p.Delay(time.Second)
	if err := permit.Release(ctxT(t, 200*time.Millisecond)); err == nil {
		t.Fatal("Release through a 1s delay returned within 200ms")
	}
	// The delayed Release still reaches the server and applies.
	waitFor(t, "the delayed Release applied", func() bool {
		resp, err := srv.Client().Get(ctxT(t, 5*time.Second), permit.Key(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 0
	})
	p.Restore()
	if err := permit.Release(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("retried Release of an applied Release: %v, want nil", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "coord_lost_total" {
			for _, mm := range mf.GetMetric() {
				if v := mm.GetCounter().GetValue(); v != 0 {
					t.Fatalf("coord_lost_total = %v after a clean release", v)
				}
			}
		}
	}
}
