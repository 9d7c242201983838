package semaphore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/benchutil"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

var (
	benchOnce sync.Once
	benchSrv  *etcdtest.Server
	benchErr  error
	benchSeq  atomic.Int64
)

// benchServer is one server with fsync on (as in production) for every
// benchmark of the run, so coord and etcd are measured on the same disk.
func benchServer(b *testing.B) *etcdtest.Server {
	benchOnce.Do(func() { benchSrv, benchErr = etcdtest.Start() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

// acquirer takes something and returns how to give it back.
type acquirer func(ctx context.Context) (release func(context.Context) error, err error)

// contender makes one contender on its own client and session.
type contender func(b *testing.B, cli *clientv3.Client, name string) (acquirer, func())

func coordSemaphore(capacity int64) contender {
	return func(b *testing.B, cli *clientv3.Client, name string) (acquirer, func()) {
		s, err := session.New(context.Background(), cli)
		if err != nil {
			b.Fatal(err)
		}
		sem := semaphore.New(s, name, capacity)
		return func(ctx context.Context) (func(context.Context) error, error) {
			p, err := sem.Acquire(ctx, 1)
			if err != nil {
				return nil, err
			}
			return p.Release, nil
		}, func() { s.Close() }
	}
}

func coordMutex(b *testing.B, cli *clientv3.Client, name string) (acquirer, func()) {
	s, err := session.New(context.Background(), cli)
	if err != nil {
		b.Fatal(err)
	}
	m := lock.NewMutex(s, name)
	return func(ctx context.Context) (func(context.Context) error, error) {
		return m.Unlock, m.Lock(ctx)
	}, func() { s.Close() }
}

func etcdMutex(b *testing.B, cli *clientv3.Client, name string) (acquirer, func()) {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(15))
	if err != nil {
		b.Fatal(err)
	}
	m := concurrency.NewMutex(s, "/etcd-bench/"+name)
	return func(ctx context.Context) (func(context.Context) error, error) {
		return m.Unlock, m.Lock(ctx)
	}, func() { s.Close() }
}

// BenchmarkSemaphore measures acquire+release cycles, each contender on
// its own client and session: uncontended, then 16 contenders on a
// semaphore of 4, on a semaphore of 1, on coord's lock.Mutex and on etcd's
// concurrency.Mutex (etcd has no semaphore; a mutex is one of capacity 1).
// p50/p99 are of the acquire, i.e. the wait; rpcs/op counts every RPC of
// every contender, watches and keepalives included.
func BenchmarkSemaphore(b *testing.B) {
	b.Run("uncontended/semaphore-4", func(b *testing.B) { runBench(b, 1, coordSemaphore(4)) })
	b.Run("uncontended/etcd-mutex", func(b *testing.B) { runBench(b, 1, etcdMutex) })
	b.Run("contenders=16/semaphore-4", func(b *testing.B) { runBench(b, 16, coordSemaphore(4)) })
	b.Run("contenders=16/semaphore-1", func(b *testing.B) { runBench(b, 16, coordSemaphore(1)) })
	b.Run("contenders=16/coord-mutex", func(b *testing.B) { runBench(b, 16, coordMutex) })
	b.Run("contenders=16/etcd-mutex", func(b *testing.B) { runBench(b, 16, etcdMutex) })
}

func runBench(b *testing.B, n int, mk contender) {
	srv := benchServer(b)
	name := fmt.Sprintf("bench-%d", benchSeq.Add(1))
	counter := etcdtest.NewCounter()
	acquirers := make([]acquirer, n)
	for i := range acquirers {
		cli, err := srv.NewClient(etcdtest.WithCounter(counter))
		if err != nil {
			b.Fatal(err)
		}
		acq, closeSession := mk(b, cli, name)
		defer closeSession()
		acquirers[i] = acq
	}
	// Let the sessions' background watches start before counting; this
	// is setup, not synchronization of the measured work.
	time.Sleep(50 * time.Millisecond)
	ctx := context.Background()
	var lat benchutil.Latencies
	var left atomic.Int64
	left.Store(int64(b.N))
	var failed atomic.Value
	counter.Reset()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, acq := range acquirers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				t0 := time.Now()
				release, err := acq(ctx)
				if err != nil {
					failed.Store(err)
					return
				}
				lat.Since(t0)
				if err := release(ctx); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	benchutil.Report(b, b.N, elapsed, &lat, counter)
}
