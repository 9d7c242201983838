package bench

import (
	"context"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/benchutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

// gate is what both barriers offer.
type gate struct {
	hold, release, wait func() error
}

func barrierCase() Case {
	return Case{
		Primitive: "barrier", Name: "release → waiter wakes", Etcd: "recipe.Barrier",
		Measured: "from the Release call to the blocked Wait returning on another client",
		coord: wakeRunner(func(ctx context.Context, holder, waiter *clientv3.Client, prefix string) gate {
			h := barrier.New(holder, "bench", barrier.WithPrefix(prefix))
			w := barrier.New(waiter, "bench", barrier.WithPrefix(prefix))
			return gate{
				hold:    func() error { return h.Hold(ctx) },
				release: func() error { return h.Release(ctx) },
				wait:    func() error { return w.Wait(ctx) },
			}
		}),
		etcd: wakeRunner(func(ctx context.Context, holder, waiter *clientv3.Client, prefix string) gate {
			h := recipe.NewBarrier(holder, prefix+"bench")
			w := recipe.NewBarrier(waiter, prefix+"bench")
			return gate{hold: h.Hold, release: h.Release, wait: w.Wait}
		}),
	}
}

// wakeRunner holds the gate, lets a waiter on another client block in
// Wait (its watch open), releases, and times the wake-up.
func wakeRunner(mk func(ctx context.Context, holder, waiter *clientv3.Client, prefix string) gate) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter, watches := etcdtest.NewCounter(), etcdtest.NewCounter()
		holder, err := env.client(counter)
		if err != nil {
			return Result{}, err
		}
		// A second counter on the waiter's client tells when its watch is
		// open, so the release really wakes a blocked waiter.
		waiter, err := etcdtest.NewClient(env.endpoints, etcdtest.WithCounter(counter), etcdtest.WithCounter(watches))
		if err != nil {
			return Result{}, err
		}
		defer waiter.Close()
		g := mk(ctx, holder, waiter, env.prefix("barrier"))
		var lat benchutil.Latencies
		return drive(1, d, 0, counter, &lat, func(int) error {
			if err := g.hold(); err != nil {
				return err
			}
			opened := watches.Get("Watch.Create")
			done := make(chan error, 1)
			go func() { done <- g.wait() }()
			for deadline := time.Now().Add(2 * time.Second); watches.Get("Watch.Create") == opened && time.Now().Before(deadline); {
				time.Sleep(100 * time.Microsecond)
			}
			t0 := time.Now()
			if err := g.release(); err != nil {
				return err
			}
			err := <-done
			lat.Since(t0)
			return err
		})
	}
}
