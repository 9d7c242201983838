package queue_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/benchutil"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

// Benchmarks run coord's queue and etcd's recipe Queue side by side on
// one embedded server with fsync on, as production runs. The recipe's
// Dequeue deletes the item as it returns it (at-most-once); coord's
// Claim+Ack is at-least-once, and still must be faster under contention.
var (
	benchOnce sync.Once
	benchSrv  *etcdtest.Server
	benchErr  error
	benchSeq  atomic.Int64
)

func benchServer(b *testing.B) *etcdtest.Server {
	benchOnce.Do(func() { benchSrv, benchErr = etcdtest.Start() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

func benchClient(b *testing.B, c *etcdtest.Counter) *clientv3.Client {
	cli, err := etcdtest.NewClient(benchServer(b).Endpoints(), etcdtest.WithCounter(c))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close() })
	return cli
}

const producers = 8

// parallel runs n calls of op over workers goroutines, recording each
// call's latency.
func parallel(b *testing.B, workers, n int, lat *benchutil.Latencies, op func(w int) error) time.Duration {
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				t := time.Now()
				if err := op(w); err != nil {
					b.Error(err)
					return
				}
				if lat != nil {
					lat.Since(t)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func BenchmarkEnqueue(b *testing.B) {
	payload := []byte("a payload of a typical small job description")
	b.Run("coord", func(b *testing.B) {
		c := etcdtest.NewCounter()
		q := queue.New(benchClient(b, c), fmt.Sprintf("bench-enq-%d", benchSeq.Add(1)))
		ctx := context.Background()
		var lat benchutil.Latencies
		c.Reset()
		b.ResetTimer()
		el := parallel(b, producers, b.N, &lat, func(int) error {
			_, err := q.Enqueue(ctx, payload)
			return err
		})
		benchutil.Report(b, b.N, el, &lat, c)
	})
	b.Run("recipe", func(b *testing.B) {
		c := etcdtest.NewCounter()
		q := recipe.NewQueue(benchClient(b, c), fmt.Sprintf("recipe/bench-enq-%d", benchSeq.Add(1)))
		var lat benchutil.Latencies
		c.Reset()
		b.ResetTimer()
		el := parallel(b, producers, b.N, &lat, func(int) error { return q.Enqueue(string(payload)) })
		benchutil.Report(b, b.N, el, &lat, c)
	})
}

func BenchmarkClaimAck(b *testing.B) {
	payload := "a payload of a typical small job description"
	for _, consumers := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("coord/consumers=%d", consumers), func(b *testing.B) {
			c := etcdtest.NewCounter()
			cli := benchClient(b, c)
			ctx := context.Background()
			q := queue.New(cli, fmt.Sprintf("bench-claim-%d", benchSeq.Add(1)))
			parallel(b, producers, b.N, nil, func(int) error {
				_, err := q.Enqueue(ctx, []byte(payload))
				return err
			})
			sessions := make([]*session.Session, consumers)
			for i := range sessions {
				s, err := session.New(ctx, cli)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				sessions[i] = s
			}
			var lat benchutil.Latencies
			c.Reset()
			b.ResetTimer()
			el := parallel(b, consumers, b.N, &lat, func(w int) error {
				m, err := q.Claim(ctx, sessions[w])
				if err != nil {
					return err
				}
				return m.Ack(ctx)
			})
			b.StopTimer()
			benchutil.Report(b, b.N, el, &lat, c)
		})
		b.Run(fmt.Sprintf("recipe/consumers=%d", consumers), func(b *testing.B) {
			c := etcdtest.NewCounter()
			q := recipe.NewQueue(benchClient(b, c), fmt.Sprintf("recipe/bench-claim-%d", benchSeq.Add(1)))
			parallel(b, producers, b.N, nil, func(int) error { return q.Enqueue(payload) })
			var lat benchutil.Latencies
			c.Reset()
			b.ResetTimer()
			// Exactly b.N Dequeues of b.N items, so none blocks forever
			// (the recipe's Dequeue takes no context).
			el := parallel(b, consumers, b.N, &lat, func(int) error {
				_, err := q.Dequeue()
				return err
			})
			b.StopTimer()
			benchutil.Report(b, b.N, el, &lat, c)
		})
	}
}
