package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// acquirer takes something and returns how to give it back.
type acquirer func(ctx context.Context) (release func(ctx context.Context) error, err error)

// contender makes one participant's acquirer on its own client; the
// returned func closes its session.
type contender func(ctx context.Context, cli *clientv3.Client, prefix string) (acquirer, func(), error)

// Lock is Lock+Unlock cycles by n contenders, each on its own client and
// session, against etcd's concurrency.Mutex.
func Lock(n int) Case {
	name := fmt.Sprintf("%d contenders", n)
	if n == 1 {
		name = "uncontended"
	}
	return Case{
		Primitive: "lock", Name: name, Etcd: "concurrency.Mutex",
		Measured: "Lock, from the call to holding the lock (the wait for the handoff when contended)",
		coord:    acquireRunner(n, coordMutex),
		etcd:     acquireRunner(n, etcdMutex),
	}
}

// Semaphore is Acquire+Release cycles of one permit by n contenders of a
// semaphore of capacity, against etcd's Mutex (a semaphore of 1).
func Semaphore(capacity, n int) Case {
	return Case{
		Primitive: "semaphore", Name: fmt.Sprintf("capacity %d, %d contenders", capacity, n), Etcd: "concurrency.Mutex",
		Measured: "Acquire, from the call to holding the permit (etcd has no semaphore: its Mutex is one of capacity 1)",
		coord:    acquireRunner(n, coordSemaphore(int64(capacity))),
		etcd:     acquireRunner(n, etcdMutex),
	}
}

func coordSession(ctx context.Context, cli *clientv3.Client, prefix string) (*session.Session, error) {
	return session.New(ctx, cli, session.WithPrefix(prefix))
}

func coordMutex(ctx context.Context, cli *clientv3.Client, prefix string) (acquirer, func(), error) {
	s, err := coordSession(ctx, cli, prefix)
	if err != nil {
		return nil, nil, err
	}
	m := lock.NewMutex(s, "bench")
	return func(ctx context.Context) (func(context.Context) error, error) {
		return m.Unlock, m.Lock(ctx)
	}, func() { s.Close() }, nil
}

func etcdMutex(ctx context.Context, cli *clientv3.Client, prefix string) (acquirer, func(), error) {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(15), concurrency.WithContext(ctx))
	if err != nil {
		return nil, nil, err
	}
	m := concurrency.NewMutex(s, prefix+"bench")
	return func(ctx context.Context) (func(context.Context) error, error) {
		return m.Unlock, m.Lock(ctx)
	}, func() { s.Close() }, nil
}

func coordSemaphore(capacity int64) contender {
	return func(ctx context.Context, cli *clientv3.Client, prefix string) (acquirer, func(), error) {
		s, err := coordSession(ctx, cli, prefix)
		if err != nil {
			return nil, nil, err
		}
		sem := semaphore.New(s, "bench", capacity)
		return func(ctx context.Context) (func(context.Context) error, error) {
			p, err := sem.Acquire(ctx, 1)
			if err != nil {
				return nil, err
			}
			return p.Release, nil
		}, func() { s.Close() }, nil
	}
}

// acquireRunner has n contenders, each on its own client and session,
// take and give back in a loop.
func acquireRunner(n int, mk contender) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter := etcdtest.NewCounter()
		clis, err := env.clientsN(n, counter)
		if err != nil {
			return Result{}, err
		}
		prefix := env.prefix("lock")
		acqs := make([]acquirer, n)
		for i, cli := range clis {
			a, closeSession, err := mk(ctx, cli, prefix)
			if err != nil {
				return Result{}, err
			}
			defer closeSession()
			acqs[i] = a
		}
		var lat benchutil.Latencies
		return drive(env, n, d, 0, counter, &lat, func(w int) error {
			t0 := time.Now()
			release, err := acqs[w](ctx)
			if err != nil {
				return err
			}
			lat.Since(t0)
			return release(ctx)
		})
	}
}
