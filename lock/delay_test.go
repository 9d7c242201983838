package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// delay is the lock-delay of these tests: the shortest there is (etcd may
// round its lease up to its minimum TTL, which only makes it longer).
const delay = time.Second

// revoke ends s's lease behind its back, as etcd does when a paused or
// partitioned holder stops renewing: its keys go with the lease, and
// nothing of s lets them go.
func revoke(t *testing.T, s *session.Session) {
	t.Helper()
	if _, err := srv.Client().Revoke(ctxT(t, 5*time.Second), s.Lease()); err != nil {
		t.Fatal(err)
	}
}

// leftUnder counts the keys under a lock name's space (its line, its
// marks and a pending delay).
func leftUnder(t *testing.T, kind, name string) int64 {
	t.Helper()
	sp, err := keys.New(keys.DefaultRoot, kind, name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), sp.Base(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// After a holder lost the lock without unlocking it, the waiter next in
// line is granted only a lock-delay after the loss; the old holder's loss
// is reported at once all the same.
func TestLockDelayAfterUncleanLoss(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	a, b := newSession(t), newSession(t)
	holder := lock.NewMutex(a, name, lock.WithLockDelay(delay))
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lost := holder.Done()
	next := lock.NewMutex(b, name, lock.WithLockDelay(delay))
	got := async(func() error { return next.Lock(ctx) })
	eventually(t, 5*time.Second, "the waiter queued", func() bool { return countKeys(t, b, keys.KindLock, name, "w") == 2 })
	start := time.Now()
	revoke(t, a)
	closedWithin(t, lost, 5*time.Second, "the old holder's Done")
	if err := within(t, got, 15*time.Second, "the successor's Lock"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay {
		t.Fatalf("the successor was granted %v after the loss, before the lock-delay of %v", waited, delay)
	}
	if next.Token() <= 0 {
		t.Fatal("no token after the delayed grant")
	}
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The loss's evidence was used up: a later Lock is not delayed again.
	again := lock.NewMutex(b, name, lock.WithLockDelay(delay))
	if err := again.TryLock(ctx); err != nil {
		t.Fatalf("TryLock after the delay was served: %v", err)
	}
	if err := again.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "nothing left under the name", func() bool { return leftUnder(t, keys.KindLock, name) == 0 })
}

// A loss no one saw (no waiter at the time) still delays the next holder,
// whenever it comes: the evidence is a key that outlives the lease. While
// the delay is pending, TryLock says the lock is taken.
func TestLockDelayAfterUnseenLoss(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	a, b := newSession(t), newSession(t)
	holder := lock.NewMutex(a, name, lock.WithLockDelay(delay))
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	revoke(t, a)
	eventually(t, 5*time.Second, "the key gone with the lease", func() bool { return countKeys(t, b, keys.KindLock, name, "w") == 0 })
	try := lock.NewMutex(b, name, lock.WithLockDelay(delay))
	if err := try.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock while a lock-delay is owed: %v, want ErrLocked", err)
	}
	if countKeys(t, b, keys.KindLock, name, "w") != 0 {
		t.Fatal("the refused TryLock left its key")
	}
	next := lock.NewMutex(b, name, lock.WithLockDelay(delay))
	if err := next.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay {
		t.Fatalf("granted %v after the loss, before the lock-delay of %v", waited, delay)
	}
	next.Unlock(ctx)
}

// A clean Unlock hands the lock over with no delay, and a cycle leaves
// nothing behind (no line key, no mark, no delay).
func TestLockDelayCleanHandoffIsNotDelayed(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	const long = 30 * time.Second // a delay no test would survive
	a, b := newSession(t), newSession(t)
	holder := lock.NewMutex(a, name, lock.WithLockDelay(long))
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	next := lock.NewMutex(b, name, lock.WithLockDelay(long))
	got := async(func() error { return next.Lock(ctx) })
	eventually(t, 5*time.Second, "the waiter queued", func() bool { return countKeys(t, b, keys.KindLock, name, "w") == 2 })
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, got, 10*time.Second, "the successor after a clean Unlock"); err != nil {
		t.Fatal(err)
	}
	if err := next.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// A waiter that gives up (its ctx ends) leaves cleanly too: the next
	// holder is not delayed for it.
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := next.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with a short ctx: %v", err)
	}
	cancel()
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := next.TryLock(ctx); err != nil {
		t.Fatalf("TryLock after a cancelled waiter left: %v", err)
	}
	next.Unlock(ctx)
	if n := leftUnder(t, keys.KindLock, name); n != 0 {
		t.Fatalf("%d keys left under the name after clean cycles", n)
	}
}

// A waiter whose ctx ends during the delay gives up without a grant and
// leaves nothing of its own; the delay still holds for the next one.
func TestLockDelayWaitEndsWithCtx(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	a, b := newSession(t), newSession(t)
	holder := lock.NewMutex(a, name, lock.WithLockDelay(3*time.Second))
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	revoke(t, a)
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	m := lock.NewMutex(b, name, lock.WithLockDelay(3*time.Second))
	if err := m.Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a ctx shorter than the delay: %v", err)
	}
	if m.Token() != 0 || countKeys(t, b, keys.KindLock, name, "w") != 0 || countKeys(t, b, keys.KindLock, name, keys.PartMark) != 0 {
		t.Fatal("a wait given up during the delay left a key or a mark")
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 3*time.Second {
		t.Fatalf("granted %v after the loss, before the lock-delay", waited)
	}
	m.Unlock(ctx)
}

// A lock-delay must be whole seconds within bounds; anything else is a
// documented error from every method, never a silent rounding.
func TestLockDelayBadValues(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	ctx := ctxT(t, 5*time.Second)
	for _, d := range []time.Duration{-time.Second, 500 * time.Millisecond, 1500 * time.Millisecond, 2 * time.Hour} {
		if err := lock.NewMutex(s, fresh(t), lock.WithLockDelay(d)).Lock(ctx); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("WithLockDelay(%v): Lock = %v, want ErrInvalid", d, err)
		}
		if err := lock.NewRWMutex(s, fresh(t), lock.WithLockDelay(d)).RLock(ctx); !errors.Is(err, lock.ErrInvalid) {
			t.Errorf("WithLockDelay(%v): RLock = %v, want ErrInvalid", d, err)
		}
	}
}

// With a lock-delay, the uncontended Lock+Unlock and the contended
// handoff cost the RPCs they cost without one: the marks ride in the
// requests already made.
func TestLockDelayCostsNoRequests(t *testing.T) {
	t.Parallel()
	for _, opts := range [][]lock.Option{nil, {lock.WithLockDelay(5 * time.Second)}} {
		c := etcdtest.NewCounter()
		cli, err := srv.NewClient(etcdtest.WithCounter(c))
		if err != nil {
			t.Fatal(err)
		}
		s := sessionOn(t, cli)
		ctx := ctxT(t, 20*time.Second)
		name := fresh(t)
		eventually(t, 5*time.Second, "session watch started", func() bool { return c.Get("Watch.Create") > 0 })
		m := lock.NewMutex(s, name, opts...)
		c.Reset()
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Total("Txn", "DeleteRange", "Range", "Put", "Watch.Create", "LeaseGrant"); got != 2 {
			t.Fatalf("uncontended Lock+Unlock with %d options: %s, want 2 RPCs", len(opts), c)
		}
		// A handoff: the measured Mutex waits behind a holder of another
		// session, on a mirror it has open already.
		holder := lock.NewMutex(newSession(t), name, opts...)
		if err := holder.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		warm, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		lock.NewMutex(s, name, opts...).Lock(warm)
		cancel()
		eventually(t, 5*time.Second, "the warm-up gone", func() bool { return countKeys(t, s, keys.KindLock, name, "w") == 1 })
		c.Reset()
		got := async(func() error { return m.Lock(ctx) })
		eventually(t, 5*time.Second, "queued", func() bool { return countKeys(t, s, keys.KindLock, name, "w") == 2 })
		if err := holder.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := within(t, got, 10*time.Second, "handoff"); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.Total("Txn", "DeleteRange", "Range", "Put", "Watch.Create", "LeaseGrant"); got != 2 {
			t.Fatalf("contended Lock+Unlock with %d options: %s, want 2 RPCs", len(opts), c)
		}
	}
}

// An RWMutex's readers and writers wait out a lock-delay too: a reader
// lost while holding delays the next writer.
func TestRWMutexLockDelay(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	a, b := newSession(t), newSession(t)
	r := lock.NewRWMutex(a, name, lock.WithLockDelay(delay))
	if err := r.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	w := lock.NewRWMutex(b, name, lock.WithLockDelay(delay))
	got := async(func() error { return w.Lock(ctx) })
	eventually(t, 5*time.Second, "the writer queued", func() bool { return countKeys(t, b, keys.KindRWLock, name, "w") == 1 })
	start := time.Now()
	revoke(t, a)
	if err := within(t, got, 15*time.Second, "the writer's Lock"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < delay {
		t.Fatalf("writer granted %v after the reader's loss, before the lock-delay", waited)
	}
	w.Unlock(ctx)
}
