package lock_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/lock"
)

// handoffCost measures, on a counted client of its own, the RPCs and the
// bytes read of one contended Lock (queued behind a holder, granted by its
// Unlock) and its Unlock, with behind waiters queued after it.
func handoffCost(t *testing.T, behind int) (rpcs, bytes int64) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	name := fresh(t)
	holder := lock.NewMutex(newSession(t), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	queued := func() int64 { return countKeys(t, newSession(t), keys.KindLock, name, "w") }
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s := sessionOn(t, cli)
	// The measured process has waited on this line before, so its mirror
	// of the line is open (opening it is one watch and one read, once).
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := lock.NewMutex(s, name).Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("warm-up wait: %v", err)
	}
	cancel()
	eventually(t, 5*time.Second, "the warm-up gone", func() bool { return queued() == 1 })

	c.Reset()
	measured := lock.NewMutex(s, name)
	got := async(func() error { return measured.Lock(ctx) })
	eventually(t, 5*time.Second, "measured waiter queued", func() bool { return queued() == 2 })
	others := newSession(t)
	var wg sync.WaitGroup
	pctx, unpark := context.WithCancel(ctx)
	defer func() { unpark(); wg.Wait() }()
	for range behind {
		m := lock.NewMutex(others, name)
		wg.Go(func() { m.Lock(pctx) })
	}
	eventually(t, 30*time.Second, "the line behind queued", func() bool { return queued() == int64(2+behind) })
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, got, 5*time.Second, "measured waiter"); err != nil {
		t.Fatal(err)
	}
	if err := measured.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	return c.Total("Txn", "DeleteRange", "Range", "Watch.Create"), c.Bytes()
}

// A contended Lock and its Unlock cost the same RPCs and read the same
// bytes with 0 and 300 waiters behind: nothing on their path reads the
// line, and the handoff itself is one watch event, no read.
func TestHandoffCostDoesNotGrowWithTheLine(t *testing.T) {
	t.Parallel()
	r0, b0 := handoffCost(t, 0)
	r1, b1 := handoffCost(t, 300)
	t.Logf("0 behind: %d RPCs, %d bytes read; 300 behind: %d RPCs, %d bytes read", r0, b0, r1, b1)
	if r1 != r0 || b1 > b0+64 {
		t.Fatalf("with 300 waiters behind: %d RPCs and %d bytes read; with none: %d and %d", r1, b1, r0, b0)
	}
	if r0 != 2 {
		t.Fatalf("a contended Lock+Unlock cost %d RPCs, want its enqueue Txn and its delete", r0)
	}
}

// joinCounted is how many keys the server counted for a Lock that joins
// a line of ahead waiters, in a process that follows the line already.
func joinCounted(t *testing.T, ahead int) int64 {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	name := fresh(t)
	queued := func() int64 { return countKeys(t, newSession(t), keys.KindLock, name, "w") }
	others := newSession(t)
	var wg sync.WaitGroup
	pctx, unpark := context.WithCancel(ctx)
	defer func() { unpark(); wg.Wait() }()
	for range ahead + 1 { // a holder and the line
		m := lock.NewMutex(others, name)
		wg.Go(func() { m.Lock(pctx) })
	}
	eventually(t, 30*time.Second, "the line queued", func() bool { return queued() == int64(ahead+1) })
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s := sessionOn(t, cli)
	// The measured process follows the line: one of its waiters is in it.
	first := lock.NewMutex(s, name)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Go(func() { first.Lock(wctx) })
	eventually(t, 30*time.Second, "the process's first waiter queued", func() bool { return queued() == int64(ahead+2) })
	sp, err := keys.New(s.Prefix(), keys.KindLock, name)
	if err != nil {
		t.Fatal(err)
	}
	base := sp.Base()
	eventually(t, 30*time.Second, "the process's mirror of the line loaded", func() bool { return watch.For(cli).Warm(base) })
	c.Reset()
	lctx, cancel := context.WithCancel(ctx)
	got := async(func() error { return lock.NewMutex(s, name).Lock(lctx) })
	eventually(t, 5*time.Second, "the measured waiter queued", func() bool { return queued() == int64(ahead+3) })
	cancel()
	if err := within(t, got, 5*time.Second, "measured waiter"); !errors.Is(err, context.Canceled) {
		t.Fatalf("measured Lock: %v, want context.Canceled", err)
	}
	return c.Counted()
}

// etcd visits every key of a range it reads to count it, whatever the
// limit: a Lock that read its line to learn whether it is first would
// cost the server the whole line. In a process that follows the line its
// mirror says so, and the join reads nothing of it.
func TestJoiningALongLineCountsNoKeys(t *testing.T) {
	t.Parallel()
	n0, n1 := joinCounted(t, 0), joinCounted(t, 300)
	t.Logf("keys counted by the server for a Lock joining a line of 0: %d, of 300: %d", n0, n1)
	if n1 > n0+2 {
		t.Fatalf("a Lock joining a line of 300 made the server count %d keys, of 0: %d", n1, n0)
	}
}

// A waiter holds no goroutine of its own while it waits (only its
// caller's): a line of thousands in one process costs their memory, not
// thousands of goroutine stacks more for the garbage collector to scan.
func TestWaitersHoldNoGoroutines(t *testing.T) {
	ctx := ctxT(t, 60*time.Second)
	name := fresh(t)
	s := newSession(t)
	holder := lock.NewMutex(s, name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 200
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range n {
		m := lock.NewMutex(s, name)
		wg.Go(func() { m.Lock(wctx) })
	}
	for countKeys(t, s, keys.KindLock, name, "w") < n+1 {
		select {
		case <-ctx.Done():
			t.Fatal("waiters did not queue")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Their keys are in; let their Txns' answers settle into waiting.
	deadline := time.Now().Add(10 * time.Second)
	extra := runtime.NumGoroutine() - before - n
	for extra > 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
		extra = runtime.NumGoroutine() - before - n
	}
	if extra > 20 {
		t.Fatalf("%d waiting Locks run %d goroutines besides their callers', want at most 20 (the process's watch and mirror)", n, extra)
	}
	cancel()
	wg.Wait()
}
