package lock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
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
