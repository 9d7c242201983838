package lock_test

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
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// benchServer is one fsynced server for every benchmark of the run, so
// coord and etcd's Mutex are measured side by side on the same disk.
func benchServer(b *testing.B) *etcdtest.Server {
	benchOnce.Do(func() { benchSrv, benchErr = etcdtest.Start() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

type locker interface {
	Lock(ctx context.Context) error
	Unlock(ctx context.Context) error
}

// contender makes one contender's lock on its own client and session,
// and returns it with the session's closer.
type contender func(b *testing.B, cli *clientv3.Client, name string) (locker, func())

func coordContender(b *testing.B, cli *clientv3.Client, name string) (locker, func()) {
	s, err := session.New(context.Background(), cli)
	if err != nil {
		b.Fatal(err)
	}
	return lock.NewMutex(s, name), func() { s.Close() }
}

func etcdContender(b *testing.B, cli *clientv3.Client, name string) (locker, func()) {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(15))
	if err != nil {
		b.Fatal(err)
	}
	return concurrency.NewMutex(s, "/etcd-bench/"+name), func() { s.Close() }
}

// BenchmarkMutex runs Lock+Unlock cycles with 1 (uncontended), 2, 4 and 16
// contenders, each on its own client and session, for coord and for etcd's
// concurrency.Mutex. p50/p99 are of Lock, i.e. the wait for a handoff.
func BenchmarkMutex(b *testing.B) {
	for _, n := range []int{1, 2, 4, 16} {
		label := fmt.Sprintf("contenders=%d", n)
		if n == 1 {
			label = "uncontended"
		}
		b.Run(label+"/coord", func(b *testing.B) { runMutexBench(b, n, coordContender) })
		b.Run(label+"/etcd", func(b *testing.B) { runMutexBench(b, n, etcdContender) })
	}
}

func runMutexBench(b *testing.B, n int, mk contender) {
	srv := benchServer(b)
	name := fmt.Sprintf("bench-%d", seq.Add(1))
	counter := etcdtest.NewCounter()
	lockers := make([]locker, n)
	for i := range lockers {
		cli, err := srv.NewClient(etcdtest.WithCounter(counter))
		if err != nil {
			b.Fatal(err)
		}
		l, closeSession := mk(b, cli, name)
		defer closeSession()
		lockers[i] = l
	}
	// Let the sessions' own background watches start before counting.
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
	for _, l := range lockers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				t0 := time.Now()
				if err := l.Lock(ctx); err != nil {
					failed.Store(err)
					return
				}
				lat.Since(t0)
				if err := l.Unlock(ctx); err != nil {
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
