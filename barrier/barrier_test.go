package barrier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestWaitBlocksUntilRelease(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	b := barrier.New(srv.Client(), name)
	if err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait on a never-held gate: %v", err)
	}
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Hold(ctx); err != nil { // a retried Hold is a no-op
		t.Fatal(err)
	}
	if held, err := b.Held(ctx); err != nil || !held {
		t.Fatalf("Held = %v, %v", held, err)
	}
	// The waiter uses its own client and Barrier, as another process would.
	cli, err := srv.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	errc := start(func() error { return barrier.New(cli, name).Wait(ctx) })
	notYet(t, errc, 300*time.Millisecond)
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Names that extend ours are other gates.
	for _, other := range []string{name + "/sub", name + "x"} {
		if err := barrier.New(srv.Client(), other).Hold(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if held, err := b.Held(ctx); err != nil || held {
		t.Fatalf("Held after Release = %v, %v", held, err)
	}
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestWaitSurvivesCompaction(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	b := barrier.New(srv.Client(), name)
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	errc := start(func() error { return barrier.New(srv.Client(), name).Wait(ctx) })
	notYet(t, errc, 100*time.Millisecond)
	for i := 0; i < 5; i++ {
		if _, err := srv.Client().Put(ctx, name+"-noise", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		if err := srv.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	notYet(t, errc, 200*time.Millisecond)
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestWaitSurvivesMemberRestart restarts every member of a 3-member
// cluster in turn, compacting while each is down, while a waiter waits,
// and releases while the last one is down. The wait must neither return
// early nor miss the release.
func TestWaitSurvivesMemberRestart(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	cli, err := c.NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.Client()
	ctx := ctxT(t, 90*time.Second)
	name := fresh(t)
	retry := func(f func(context.Context) error) {
		t.Helper()
		for {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := f(rctx)
			cancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
		}
	}
	holder := barrier.New(admin, name)
	retry(holder.Hold)
	errc := start(func() error { return barrier.New(cli, name).Wait(ctx) })
	notYet(t, errc, 200*time.Millisecond)
	for i := 0; i < 3; i++ {
		c.Kill(i)
		retry(func(ctx context.Context) error { _, err := admin.Put(ctx, name+"-noise", fmt.Sprint(i)); return err })
		retry(c.Compact)
		if i == 2 {
			retry(holder.Release)
		} else {
			notYet(t, errc, 100*time.Millisecond)
		}
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := within(t, errc, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestSessionHolderCrashOpensGate(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	s1, s2 := newSession(t), newSession(t)
	b := barrier.New(srv.Client(), name)
	if err := b.HoldWith(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if err := b.HoldWith(ctx, s2); err != nil {
		t.Fatal(err)
	}
	errc := start(func() error { return barrier.New(srv.Client(), name).Wait(ctx) })
	// One holder crashes: the other still holds the gate shut.
	if _, err := srv.Client().Revoke(ctx, s1.Lease()); err != nil {
		t.Fatal(err)
	}
	notYet(t, errc, 300*time.Millisecond)
	// The last holder crashes: the gate opens without anyone releasing.
	if _, err := srv.Client().Revoke(ctx, s2.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestPersistentHoldOutlivesSessionHolds(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	s := newSession(t)
	b := barrier.New(srv.Client(), name)
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.HoldWith(ctx, s); err != nil {
		t.Fatal(err)
	}
	errc := start(func() error { return b.Wait(ctx) })
	s.Close()
	notYet(t, errc, 300*time.Millisecond)
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A Release followed at once by a new Hold still wakes every waiter that
// was waiting when Release ran.
func TestReleaseIsNeverMissed(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	// A Wait subscribes to the process's feed of the barrier only after its
	// first read found the gate shut, so five subscriptions on the waiters'
	// client mean all five are waiting; and they share one watch.
	name, b, cli, counter := heldGate(t, ctx)
	var waiters []<-chan error
	for i := 0; i < 5; i++ {
		waiters = append(waiters, start(func() error { return barrier.New(cli, name).Wait(ctx) }))
	}
	// The feed's watch is created just after its first subscription, so
	// wait for it too: the assertion is that there is one, not none.
	for watch.For(cli).Stats().Subs < 5 || counter.Get("Watch.Create") == 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("waiters did not start: %s", counter)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if n := counter.Get("Watch.Create"); n != 1 {
		t.Fatalf("5 waiters in one process opened %d watches, want 1", n)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range waiters {
		if err := within(t, w, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// The gate is shut again for anyone who comes later.
	late := start(func() error { return b.Wait(ctx) })
	notYet(t, late, 200*time.Millisecond)
	b.Release(ctx)
	if err := within(t, late, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	b := barrier.New(srv.Client(), fresh(t))
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Release(ctx)
	wctx, cancel := context.WithCancel(ctx)
	errc := start(func() error { return b.Wait(wctx) })
	notYet(t, errc, 100*time.Millisecond)
	cancel()
	if err := within(t, errc, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer dcancel()
	if err := b.Wait(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestBarrierBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	root := fresh(t)
	cli := srv.Client()
	bad := map[string]*barrier.Barrier{
		"nil client":   barrier.New(nil, "x"),
		"empty name":   barrier.New(cli, "", barrier.WithPrefix(root)),
		"long name":    barrier.New(cli, strings.Repeat("x", 513), barrier.WithPrefix(root)),
		"invalid utf8": barrier.New(cli, "a\xffb", barrier.WithPrefix(root)),
		"empty root":   barrier.New(cli, "x", barrier.WithPrefix("")),
	}
	for what, b := range bad {
		if err := b.Hold(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Hold = %v, want ErrInvalid", what, err)
		}
		if err := b.Release(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Release = %v", what, err)
		}
		if err := b.Wait(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Wait = %v", what, err)
		}
		if _, err := b.Held(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Held = %v", what, err)
		}
	}
	b := barrier.New(cli, "x", barrier.WithPrefix(root))
	if err := b.HoldWith(ctx, nil); !errors.Is(err, barrier.ErrInvalid) {
		t.Errorf("nil session: %v", err)
	}
	s := newSession(t)
	s.Close()
	if err := b.HoldWith(ctx, s); !errors.Is(err, session.ErrClosed) {
		t.Errorf("closed session: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Hold(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Hold: %v", err)
	}
	if n := keysUnder(t, cli, root); n != 0 {
		t.Errorf("%d stray keys under %s", n, root)
	}
}

// A Release wakes every waiter of a process through its one feed, with
// no read of their own: the RPCs that follow it do not grow with the
// number of waiters.
func TestReleaseWakesWaitersWithoutReads(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 50} {
		ctx := ctxT(t, 60*time.Second)
		name, b, cli, counter := heldGate(t, ctx)
		// Settled means: every waiter subscribed to the feed, and the
		// reads of their start are done (the first waiter reads twice: once
		// before the feed's watch existed and once after it started; the
		// others subscribe to a started feed and read once).
		settled := func(subs int, txns int64) {
			t.Helper()
			for watch.For(cli).Stats().Subs < subs || counter.Get("Watch.Create") == 0 || counter.Get("Txn") < txns {
				select {
				case <-ctx.Done():
					t.Fatalf("waiters did not start: %s", counter)
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		waiters := []<-chan error{start(func() error { return barrier.New(cli, name).Wait(ctx) })}
		settled(1, 2)
		for range n - 1 {
			waiters = append(waiters, start(func() error { return barrier.New(cli, name).Wait(ctx) }))
		}
		settled(n, int64(n)+1)
		before := counter.Total()
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
		for _, w := range waiters {
			if err := within(t, w, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if rpcs := counter.Total() - before; rpcs != 0 {
			t.Fatalf("%d waiters woken by a Release made %d RPCs, want 0 (%s)", n, rpcs, counter)
		}
	}
}

// heldGate is a fresh barrier, shut by a hold on the test server's client,
// and a client of its own for waiters, counting its RPCs (closed with the
// server).
func heldGate(t *testing.T, ctx context.Context) (string, *barrier.Barrier, *clientv3.Client, *etcdtest.Counter) {
	t.Helper()
	name := fresh(t)
	b := barrier.New(srv.Client(), name)
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	counter := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(counter))
	if err != nil {
		t.Fatal(err)
	}
	return name, b, cli, counter
}
