package metrics_test

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
)

// Register one Metrics with your own registry and hand it to the session:
// every primitive on the session reports into it.
func Example() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	ctx := context.Background()
	s, _ := session.New(ctx, srv.Client(), session.WithMetrics(m))
	defer s.Close()
	mu := lock.NewMutex(s, "backup")
	mu.Lock(ctx)
	mu.Unlock(ctx)

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "coord_acquisitions_total" {
			fmt.Println(mf.GetName(), mf.Metric[0].Counter.GetValue())
		}
	}
	// Output: coord_acquisitions_total 1
}
