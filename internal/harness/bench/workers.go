package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
)

// EnqueueBatch is producers producers, each enqueueing batches of size
// messages with EnqueueBatch (one Txn each), against as many producers of
// the recipe Queue's one Put per message. An op is one message.
func EnqueueBatch(size, producers int) Case {
	return Case{
		Primitive: "queue", Name: fmt.Sprintf("enqueue batches of %d, %d producer%s", size, producers, plural(producers)), Etcd: "recipe.Queue",
		Measured: "EnqueueBatch, per message (etcd: Enqueue)",
		coord: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			counter := etcdtest.NewCounter()
			cli, err := env.client(counter)
			if err != nil {
				return Result{}, err
			}
			q := queue.New(cli, "bench", queue.WithPrefix(env.prefix("queue")))
			batch := make([]queue.Entry, size)
			for i := range batch {
				batch[i] = queue.Entry{Payload: []byte(payload)}
			}
			var lat benchutil.Latencies
			res, err := drive(env, producers, d, 0, counter, &lat, func(int) error {
				defer lat.Since(time.Now())
				_, err := q.EnqueueBatch(ctx, batch)
				return err
			})
			res.Ops *= size
			return res, err
		},
		etcd: recipeEnqueue(producers),
	}
}

// Consume is one process's worker pool (queue.Consume with workers
// handlers, claiming and acking batch messages a Txn) on a backlog,
// against as many consumers of the recipe Queue's Dequeue. An op is one
// message handled (and acked: Consume returns once its acks are in); the
// latency is a message's wait in the pool, from its claim to its handler's
// start.
func Consume(workers, batch int) Case {
	return Case{
		Primitive: "queue", Name: fmt.Sprintf("Consume, %d workers, batch %d", workers, batch), Etcd: "recipe.Queue (Dequeue)",
		Measured: "Consume: a message's wait from its claim to its handler (etcd: Dequeue, which deletes the item before the work)",
		coord: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			prefix := env.prefix("queue")
			filler, err := env.client(nil)
			if err != nil {
				return Result{}, err
			}
			// More than the pool gets through in d, so it never idles.
			// (etcd visits every key of a range it reads, to count them:
			// the recipe's reads of the whole queue pay for all of it,
			// coord's head reads end at a horizon a few hundred messages
			// in.)
			n := 2000 + int(6000*d.Seconds())
			fq := queue.New(filler, "bench", queue.WithPrefix(prefix))
			entries := make([]queue.Entry, 32)
			for i := range entries {
				entries[i] = queue.Entry{Payload: []byte(payload)}
			}
			if err := fill(n/32+1, func() error { _, err := fq.EnqueueBatch(ctx, entries); return err }); err != nil {
				return Result{}, err
			}
			counter := etcdtest.NewCounter()
			q, s, err := countedConsumer(ctx, env, prefix, counter)
			if err != nil {
				return Result{}, err
			}
			defer s.Close()
			var handled atomic.Int64
			var lat benchutil.Latencies
			cctx, stop := context.WithTimeout(ctx, d)
			defer stop()
			win := env.open(counter)
			err = q.Consume(cctx, s, func(ctx context.Context, m *queue.Message) error {
				lat.Since(m.Claimed)
				handled.Add(1)
				return nil
			}, queue.WithWorkers(workers), queue.WithBatch(batch))
			res := win.result(int(handled.Load()))
			if err != nil && cctx.Err() == nil {
				return Result{}, err
			}
			res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
			return res, nil
		},
		etcd: Claim(workers).etcd,
	}
}

// countedConsumer is a queue consumer of its own: a client counting into
// counter, a session on it, and the bench queue under prefix.
func countedConsumer(ctx context.Context, env *Env, prefix string, counter *etcdtest.Counter) (*queue.Queue, *session.Session, error) {
	cli, err := env.client(counter)
	if err != nil {
		return nil, nil, err
	}
	s, err := coordSession(ctx, cli, prefix)
	if err != nil {
		return nil, nil, err
	}
	return queue.New(cli, "bench", queue.WithPrefix(prefix)), s, nil
}

// plural is "s" for n other than 1.
func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
