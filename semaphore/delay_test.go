package semaphore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/semaphore"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A permit lost without a release (its lease revoked behind its back)
// delays the next grant; a Release does not, and clean use leaves no key.
func TestLockDelay(t *testing.T) {
	t.Parallel()
	const d = time.Second
	ctx := ctxT(t, 30*time.Second)
	a, b := newSession(t, nil), newSession(t, nil)
	sa := semaphore.New(a, "s", 2, semaphore.WithLockDelay(d))
	sb := semaphore.New(b, "s", 2, semaphore.WithLockDelay(d))
	p1, err := sa.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := sb.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// A clean Release: the waiter is granted at once.
	got := make(chan error, 1)
	go func() {
		p, err := sb.Acquire(ctx, 1)
		if err == nil {
			err = p.Release(ctx)
		}
		got <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for queued(t, "s") < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := p2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(d):
		t.Fatal("a clean Release delayed the next grant")
	}
	// An unclean loss of p1: the next Acquire waits; TryAcquire refuses.
	start := time.Now()
	if _, err := srv.Client().Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p1.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the lost permit's Done did not close")
	}
	if _, err := sb.TryAcquire(ctx, 1); !errors.Is(err, semaphore.ErrNoPermits) {
		t.Fatalf("TryAcquire while a lock-delay is pending: %v, want ErrNoPermits", err)
	}
	p, err := sb.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < d {
		t.Fatalf("granted %v after the loss, before the lock-delay of %v", waited, d)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(ctx, root(t)+"semaphore/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if k := string(kv.Key); k != root(t)+"semaphore/s/capacity" {
			t.Errorf("left behind: %s", k)
		}
	}
	if _, err := semaphore.New(b, "t", 1, semaphore.WithLockDelay(time.Millisecond)).Acquire(context.Background(), 1); !errors.Is(err, semaphore.ErrInvalid) {
		t.Fatalf("a 1ms lock-delay: %v, want ErrInvalid", err)
	}
}

// queued counts the requests in the line of semaphore name.
func queued(t *testing.T, name string) int64 {
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), root(t)+"semaphore/"+name+"/q/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}
