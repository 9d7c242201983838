package leaktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	"go.uber.org/goleak"
)

// TestClosedClientLeavesNothing: a client whose process used every shared
// part of the waiting core (a lock's mirror, a semaphore's, a queue's
// dispatcher following an empty queue, each kept for reuse a while after
// its last use) leaves no goroutine once it and its session are closed,
// long before those idle timeouts (30 s) would have ended them.
func TestClosedClientLeavesNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()
	cli, err := etcdtest.NewClient(srv.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	root := etcdtest.Name(t) + "/"
	s, err := session.New(etcdtest.Context(t, 10*time.Second), cli, session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	ctx := etcdtest.Context(t, 10*time.Second)
	m := lock.NewMutex(s, "l")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// A second waiter, so the line's mirror is in use, then given up.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := lock.NewMutex(s, "l").Lock(wctx); err == nil {
		t.Fatal("a second Lock of a held lock succeeded")
	}
	cancel()
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := semaphore.New(s, "s", 1).Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	q := queue.New(cli, "q", queue.WithPrefix(root))
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if _, err := q.Claim(cctx, s); err == nil {
		t.Fatal("a Claim of an empty queue returned a message")
	}
	cancel()

	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := goleak.Find(before)
		if err == nil {
			t.Logf("nothing left %s after Close", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left 10 s after the session and client were closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
