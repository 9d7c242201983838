package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/lock"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// benchDelay is the lock-delay of the LockDelay case: long enough that a
// handoff that waited for it would stand out.
const benchDelay = 10 * time.Second

// LockDelay is Lock+Unlock cycles by n contenders with a lock-delay on,
// against the same without one: what a lock-delay costs when every
// handoff is clean (it should cost nothing but a few bytes).
func LockDelay(n int) Case {
	name := fmt.Sprintf("lock-delay %v, %d contenders", benchDelay, n)
	if n == 1 {
		name = fmt.Sprintf("lock-delay %v, uncontended", benchDelay)
	}
	return Case{
		Primitive: "lock", Name: name, Etcd: "coord, lock-delay off",
		Measured: "Lock, from the call to holding the lock (the wait for the handoff when contended)",
		coord:    acquireRunner(n, coordMutexWith(lock.WithLockDelay(benchDelay))),
		etcd:     acquireRunner(n, coordMutex),
	}
}

func coordMutexWith(opts ...lock.Option) contender {
	return func(ctx context.Context, cli *clientv3.Client, prefix string) (acquirer, func(), error) {
		s, err := coordSession(ctx, cli, prefix)
		if err != nil {
			return nil, nil, err
		}
		m := lock.NewMutex(s, "bench", opts...)
		return func(ctx context.Context) (func(context.Context) error, error) {
			return m.Unlock, m.Lock(ctx)
		}, func() { s.Close() }, nil
	}
}
