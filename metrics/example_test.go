package metrics_test

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/queue"
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

// The series operators watch first: is the session alive, can it reach
// etcd, how deep is the queue, which build runs. The queue's depth is
// read at scrape time, one count-only Txn per WithDepthInterval.
func Example_operations() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	m := metrics.New(metrics.WithDepthInterval(0)) // read at every scrape, for the example
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	ctx := context.Background()
	s, _ := session.New(ctx, srv.Client(), session.WithMetrics(m))
	q := queue.New(srv.Client(), "emails", queue.WithMetrics(m))
	q.Enqueue(ctx, []byte("hello"))
	q.Enqueue(ctx, []byte("world"))
	msg, _ := q.Claim(ctx, s)
	msg.Dead(ctx, "bounced")
	q.Enqueue(ctx, []byte("later"), queue.WithDelay(time.Hour))

	show := func() {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			switch mf.GetName() {
			case "coord_session_alive", "coord_session_etcd_reachable":
				fmt.Println(mf.GetName(), mf.Metric[0].Gauge.GetValue())
			case "coord_queue_depth":
				for _, x := range mf.Metric {
					fmt.Printf("%s{%s} %v\n", mf.GetName(), x.Label[1].GetValue(), x.Gauge.GetValue())
				}
			}
		}
	}
	show()
	s.Close()
	fmt.Println("after Close:")
	show()
	// Output:
	// coord_queue_depth{claimed} 0
	// coord_queue_depth{dead} 1
	// coord_queue_depth{delayed} 1
	// coord_queue_depth{ready} 1
	// coord_session_alive 1
	// coord_session_etcd_reachable 1
	// after Close:
	// coord_queue_depth{claimed} 0
	// coord_queue_depth{dead} 1
	// coord_queue_depth{delayed} 1
	// coord_queue_depth{ready} 1
	// coord_session_alive 0
}
