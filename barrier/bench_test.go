package barrier_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/benchutil"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

var (
	benchOnce sync.Once
	benchSrv  *etcdtest.Server
	benchErr  error
)

// benchServer is one fsynced server for every benchmark of the run, so
// coord and etcd's recipes are measured side by side on the same disk.
func benchServer(b *testing.B) *etcdtest.Server {
	benchOnce.Do(func() { benchSrv, benchErr = etcdtest.Start() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

func benchClient(b *testing.B, c *etcdtest.Counter) *clientv3.Client {
	cli, err := benchServer(b).NewClient(etcdtest.WithCounter(c))
	if err != nil {
		b.Fatal(err)
	}
	return cli
}

// gate is what both barriers offer to the benchmark.
type gate struct {
	hold, release func() error
	wait          func() error
}

// BenchmarkBarrierWakeup runs Hold, a Wait on another client that is
// blocked (its watch is open), then Release. p50/p99 are from Release to
// the waiter's return: the wake-up latency. rpcs/op counts both clients.
func BenchmarkBarrierWakeup(b *testing.B) {
	ctx := context.Background()
	b.Run("coord", func(b *testing.B) {
		runWakeup(b, func(holder, waiter *clientv3.Client, name string) gate {
			h, w := barrier.New(holder, name), barrier.New(waiter, name)
			return gate{func() error { return h.Hold(ctx) }, func() error { return h.Release(ctx) }, func() error { return w.Wait(ctx) }}
		})
	})
	b.Run("etcd-recipe", func(b *testing.B) {
		runWakeup(b, func(holder, waiter *clientv3.Client, name string) gate {
			h, w := recipe.NewBarrier(holder, "/etcd-bench/"+name), recipe.NewBarrier(waiter, "/etcd-bench/"+name)
			return gate{h.Hold, h.Release, w.Wait}
		})
	})
}

func runWakeup(b *testing.B, mk func(holder, waiter *clientv3.Client, name string) gate) {
	counter, watches := etcdtest.NewCounter(), etcdtest.NewCounter()
	holder := benchClient(b, counter)
	waiter := benchClient(b, counter)
	// A second counter on the waiter tells when its watch is open.
	waiterW, err := benchServer(b).NewClient(etcdtest.WithCounter(counter), etcdtest.WithCounter(watches))
	if err != nil {
		b.Fatal(err)
	}
	_ = waiter
	g := mk(holder, waiterW, fmt.Sprintf("wake-%d", seq.Add(1)))
	var lat benchutil.Latencies
	counter.Reset()
	b.ResetTimer()
	begin := time.Now()
	for i := 0; i < b.N; i++ {
		if err := g.hold(); err != nil {
			b.Fatal(err)
		}
		opened := watches.Get("Watch.Create")
		done := make(chan error, 1)
		go func() { done <- g.wait() }()
		for watches.Get("Watch.Create") == opened {
			time.Sleep(100 * time.Microsecond)
		}
		t0 := time.Now()
		if err := g.release(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		lat.Since(t0)
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	benchutil.Report(b, b.N, elapsed, &lat, counter)
}

type double interface {
	Enter() error
	Leave() error
}

// BenchmarkDoubleBarrierRound runs rounds of 3 participants, each on its
// own client and session; one op is a whole round (all Enter, all Leave).
// p50/p99 are of the round as one participant sees it.
func BenchmarkDoubleBarrierRound(b *testing.B) {
	ctx := context.Background()
	b.Run("coord", func(b *testing.B) {
		runRounds(b, func(cli *clientv3.Client, name string) (double, func()) {
			s, err := session.New(ctx, cli)
			if err != nil {
				b.Fatal(err)
			}
			d := barrier.NewDouble(s, name, 3)
			return ctxDouble{func() error { return d.Enter(ctx) }, func() error { return d.Leave(ctx) }}, func() { s.Close() }
		})
	})
	b.Run("etcd-recipe", func(b *testing.B) {
		runRounds(b, func(cli *clientv3.Client, name string) (double, func()) {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(15))
			if err != nil {
				b.Fatal(err)
			}
			return recipe.NewDoubleBarrier(s, "/etcd-bench/"+name, 3), func() { s.Close() }
		})
	})
}

type ctxDouble struct{ enter, leave func() error }

func (d ctxDouble) Enter() error { return d.enter() }
func (d ctxDouble) Leave() error { return d.leave() }

func runRounds(b *testing.B, mk func(cli *clientv3.Client, name string) (double, func())) {
	const n = 3
	name := fmt.Sprintf("round-%d", seq.Add(1))
	counter := etcdtest.NewCounter()
	parts := make([]double, n)
	for i := range parts {
		d, closeSession := mk(benchClient(b, counter), name)
		defer closeSession()
		parts[i] = d
	}
	var lat benchutil.Latencies
	counter.Reset()
	b.ResetTimer()
	begin := time.Now()
	var wg sync.WaitGroup
	var rounds atomic.Int64
	errs := make(chan error, n)
	for i, d := range parts {
		wg.Go(func() {
			for r := 0; r < b.N; r++ {
				t0 := time.Now()
				if err := d.Enter(); err != nil {
					errs <- err
					return
				}
				if err := d.Leave(); err != nil {
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
	// etcd's recipe has no context to cancel, and its rounds can deadlock
	// when a fast participant re-enters while others still leave; report
	// that instead of hanging the run (its goroutines are abandoned).
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		b.Skipf("hung after %d of %d rounds", rounds.Load(), b.N)
	}
	elapsed := time.Since(begin)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	benchutil.Report(b, b.N, elapsed, &lat, counter)
}
