package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

// gate is what both barriers offer.
type gate struct {
	hold, release, wait func() error
}

// Barrier is a Release waking a blocked Wait, against the recipe Barrier.
func Barrier() Case {
	return Case{
		Primitive: "barrier", Name: "release → waiter wakes", Etcd: "recipe.Barrier",
		Measured: "from the Release call to the blocked Wait returning on another client (coord's ops/s include a 2 ms pause a round, its waiter's watch being shared)",
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
		return drive(env, 1, d, 0, counter, &lat, func(int) error {
			if err := g.hold(); err != nil {
				return err
			}
			opened := watches.Get("Watch.Create")
			done := make(chan error, 1)
			go func() { done <- g.wait() }()
			// The recipe opens a watch per Wait. coord's waiter shares its
			// process's watch, open since the first round: then its Wait
			// blocks on the local mirror within microseconds, and 2 ms is
			// ample (waiting for a new watch there cost 2 s a round).
			start := time.Now()
			for deadline := start.Add(2 * time.Second); watches.Get("Watch.Create") == opened && time.Now().Before(deadline); {
				if opened > 0 && time.Since(start) > 2*time.Millisecond {
					break
				}
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

// DoubleBarrier is rounds of n participants, each on its own client and
// session, against the recipe DoubleBarrier: one op is a whole round.
func DoubleBarrier(n int) Case {
	coordMk := func(ctx context.Context, cli *clientv3.Client, prefix string) (enterLeave, func(), error) {
		s, err := coordSession(ctx, cli, prefix)
		if err != nil {
			return enterLeave{}, nil, err
		}
		d := barrier.NewDouble(s, "bench", n)
		return enterLeave{func() error { return d.Enter(ctx) }, func() error { return d.Leave(ctx) }}, func() { s.Close() }, nil
	}
	etcdMk := func(ctx context.Context, cli *clientv3.Client, prefix string) (enterLeave, func(), error) {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(15), concurrency.WithContext(ctx))
		if err != nil {
			return enterLeave{}, nil, err
		}
		d := recipe.NewDoubleBarrier(s, prefix+"bench", n)
		return enterLeave{d.Enter, d.Leave}, func() { s.Close() }, nil
	}
	return Case{
		Primitive: "barrier", Name: fmt.Sprintf("double barrier round, %d participants", n), Etcd: "recipe.DoubleBarrier",
		Measured: "one round (every participant enters, then leaves), as the first participant sees it",
		coord:    roundRunner(n, coordMk),
		etcd:     roundRunner(n, etcdMk),
	}
}

type enterLeave struct{ enter, leave func() error }

// roundRunner runs a number of rounds fixed in advance from d (every
// participant must take part in every round, so none may decide alone to
// stop), at about 100 rounds a second. etcd's recipe has no context and
// its rounds can deadlock when a fast participant re-enters while others
// still leave: that is reported in the result, not waited out.
func roundRunner(n int, mk func(ctx context.Context, cli *clientv3.Client, prefix string) (enterLeave, func(), error)) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter := etcdtest.NewCounter()
		clis, err := env.clientsN(n, counter)
		if err != nil {
			return Result{}, err
		}
		prefix := env.prefix("dbarrier")
		parts := make([]enterLeave, n)
		for i, cli := range clis {
			p, closeSession, err := mk(ctx, cli, prefix)
			if err != nil {
				return Result{}, err
			}
			defer closeSession()
			parts[i] = p
		}
		var lat benchutil.Latencies
		var rounds atomic.Int64
		total := max(10, int(d.Seconds()*100))
		errs := make(chan error, n)
		win := env.open(counter)
		var wg sync.WaitGroup
		for i, p := range parts {
			wg.Go(func() {
				for range total {
					t0 := time.Now()
					if err := p.enter(); err != nil {
						errs <- err
						return
					}
					if err := p.leave(); err != nil {
						errs <- err
						return
					}
					if i == 0 {
						lat.Since(t0)
						rounds.Add(1)
					}
				}
			})
		}
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(d + 10*time.Second):
			// Its goroutines are abandoned, blocked in a recipe call that
			// takes no context.
			return Result{Ops: int(rounds.Load()), Elapsed: time.Since(win.start), Note: fmt.Sprintf("hung after %d rounds", rounds.Load())}, nil
		}
		close(errs)
		for err := range errs {
			return Result{}, err
		}
		res := win.result(int(rounds.Load()))
		res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
		return res, nil
	}
}
