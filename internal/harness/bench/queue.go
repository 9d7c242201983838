package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

const payload = "a payload of a typical small job description"

// Enqueue is one producer enqueueing, against the recipe Queue.
func Enqueue() Case {
	return Case{
		Primitive: "queue", Name: "enqueue, 1 producer", Etcd: "recipe.Queue",
		Measured: "Enqueue",
		coord: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			counter := etcdtest.NewCounter()
			cli, err := env.client(counter)
			if err != nil {
				return Result{}, err
			}
			q := queue.New(cli, "bench", queue.WithPrefix(env.prefix("queue")))
			var lat benchutil.Latencies
			return drive(env, 1, d, 0, counter, &lat, func(int) error {
				defer lat.Since(time.Now())
				_, err := q.Enqueue(ctx, []byte(payload))
				return err
			})
		},
		etcd: recipeEnqueue(1),
	}
}

// recipeEnqueue is the recipe Queue's side of the enqueue cases: producers
// producers, one Put per message.
func recipeEnqueue(producers int) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter := etcdtest.NewCounter()
		cli, err := env.client(counter)
		if err != nil {
			return Result{}, err
		}
		q := recipe.NewQueue(cli, env.prefix("recipe")+"bench")
		var lat benchutil.Latencies
		return drive(env, producers, d, 0, counter, &lat, func(int) error {
			defer lat.Since(time.Now())
			return q.Enqueue(payload)
		})
	}
}

// backlog is how many messages a claim case fills in first: more than
// consumers get through in d, so none of them ever waits on an empty queue
// (the recipe's Dequeue takes no context and would block for good).
func backlog(d time.Duration) int { return 100 + int(600*d.Seconds()) }

// fill enqueues n messages with 8 producers on an uncounted client.
func fill(n int, enqueue func() error) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	per := (n + 7) / 8
	for range 8 {
		wg.Go(func() {
			for range per {
				if err := enqueue(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// Claim is claim+ack by consumers on a backlog, against the recipe
// Queue's Dequeue.
func Claim(consumers int) Case {
	return Case{
		Primitive: "queue", Name: fmt.Sprintf("claim + ack, %d consumers", consumers), Etcd: "recipe.Queue (Dequeue)",
		Measured: "Claim + Ack (coord) or Dequeue (etcd, which deletes the item before the work: a crash loses it)",
		coord: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			prefix := env.prefix("queue")
			filler, err := env.client(nil)
			if err != nil {
				return Result{}, err
			}
			n := backlog(d)
			fq := queue.New(filler, "bench", queue.WithPrefix(prefix))
			if err := fill(n, func() error { _, err := fq.Enqueue(ctx, []byte(payload)); return err }); err != nil {
				return Result{}, err
			}
			counter := etcdtest.NewCounter()
			clis, err := env.clientsN(consumers, counter)
			if err != nil {
				return Result{}, err
			}
			qs := make([]*queue.Queue, consumers)
			ss := make([]*session.Session, consumers)
			for i, cli := range clis {
				qs[i] = queue.New(cli, "bench", queue.WithPrefix(prefix))
				if ss[i], err = coordSession(ctx, cli, prefix); err != nil {
					return Result{}, err
				}
				defer ss[i].Close()
			}
			var lat benchutil.Latencies
			return drive(env, consumers, d, n, counter, &lat, func(w int) error {
				defer lat.Since(time.Now())
				m, err := qs[w].Claim(ctx, ss[w])
				if err != nil {
					return err
				}
				return m.Ack(ctx)
			})
		},
		etcd: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			prefix := env.prefix("recipe") + "bench"
			filler, err := env.client(nil)
			if err != nil {
				return Result{}, err
			}
			n := backlog(d)
			fq := recipe.NewQueue(filler, prefix)
			if err := fill(n, func() error { return fq.Enqueue(payload) }); err != nil {
				return Result{}, err
			}
			counter := etcdtest.NewCounter()
			clis, err := env.clientsN(consumers, counter)
			if err != nil {
				return Result{}, err
			}
			qs := make([]*recipe.Queue, consumers)
			for i, cli := range clis {
				qs[i] = recipe.NewQueue(cli, prefix)
			}
			var lat benchutil.Latencies
			// drive takes at most n operations of n items, so no Dequeue
			// ever finds the queue empty.
			return drive(env, consumers, d, n, counter, &lat, func(w int) error {
				defer lat.Since(time.Now())
				_, err := qs[w].Dequeue()
				return err
			})
		},
	}
}
