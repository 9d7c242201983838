package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestUncontendedIsOneTxnAndOneDelete(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s := sessionOn(t, cli)
	m := lock.NewMutex(s, fresh(t))
	ctx := ctxT(t, 10*time.Second)
	// The session's own watch on its marker is not the lock's cost.
	eventually(t, 5*time.Second, "session watch started", func() bool { return c.Get("Watch.Create") > 0 })
	c.Reset()
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Token() <= 0 {
		t.Fatalf("Token = %d while held", m.Token())
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Total("Txn", "DeleteRange", "Range", "Put", "Watch.Create"); got != 2 || c.Get("Txn") != 1 || c.Get("DeleteRange") != 1 {
		t.Fatalf("Lock+Unlock made %s, want Txn=1 DeleteRange=1", c)
	}
}

func TestSameSessionExcludes(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	m1, m2 := lock.NewMutex(s, name), lock.NewMutex(s, name)
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock on the same session while held: %v, want ErrLocked", err)
	}
	got := async(func() error { return m2.Lock(ctx) })
	stillBlocked(t, got, 300*time.Millisecond, "second Mutex's Lock on the same session")
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, got, 5*time.Second, "Lock after Unlock"); err != nil {
		t.Fatal(err)
	}
	if m2.Token() <= m1.Token() && m1.Token() != 0 {
		t.Fatalf("token did not increase")
	}
	m2.Unlock(ctx)
}

func TestLockTwiceIsErrHeld(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	m := lock.NewMutex(s, fresh(t))
	ctx := ctxT(t, 10*time.Second)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("second Lock: %v, want ErrHeld", err)
	}
	if err := m.TryLock(ctx); !errors.Is(err, lock.ErrHeld) {
		t.Fatalf("TryLock while held: %v, want ErrHeld", err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	m.Unlock(ctx)
}

func TestPrefixNamesIndependent(t *testing.T) {
	t.Parallel()
	s1, s2 := newSession(t), newSession(t)
	base := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	for _, pair := range [][2]string{{base, base + "/b"}, {base + "x", base + "xy"}, {base + "/b", base}} {
		a := lock.NewMutex(s1, pair[0])
		if err := a.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		b := lock.NewMutex(s2, pair[1])
		if err := b.TryLock(ctx); err != nil {
			t.Fatalf("%q held: TryLock(%q) = %v, want success", pair[0], pair[1], err)
		}
		b.Unlock(ctx)
		a.Unlock(ctx)
	}
}

func TestUnlockNotHeldAndFenced(t *testing.T) {
	t.Parallel()
	s1, s2 := newSession(t), newSession(t)
	name := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	m1 := lock.NewMutex(s1, name)
	if err := m1.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Unlock never locked: %v, want ErrNotHeld", err)
	}
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	m2 := lock.NewMutex(s2, name)
	if err := m2.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// A repeated Unlock of the old holder must not release the new one.
	if err := m1.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("second Unlock: %v, want ErrNotHeld", err)
	}
	resp, err := srv.Client().Txn(ctx).If(m2.IsOwner()).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("new holder's IsOwner after old Unlock: %v %v", resp, err)
	}
	resp, err = srv.Client().Txn(ctx).If(m1.IsOwner()).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("old holder's IsOwner holds after Unlock: %v %v", resp, err)
	}
	if err := m2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestTokensIncreaseAcrossSessions(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 30*time.Second)
	var mu sync.Mutex
	var tokens []int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		s := newSession(t)
		wg.Go(func() {
			for range 10 {
				m := lock.NewMutex(s, name)
				if err := m.Lock(ctx); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				tokens = append(tokens, m.Token())
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(tokens) != 40 {
		t.Fatalf("%d acquisitions, want 40", len(tokens))
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("token %d = %d after %d: not strictly increasing", i, tokens[i], tokens[i-1])
		}
	}
}

func TestNoOverlap8Sessions50Cycles(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 50*time.Second)
	var holders, cycles atomic.Int64
	var last atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		s := newSession(t)
		wg.Go(func() {
			m := lock.NewMutex(s, name)
			for range 50 {
				if err := m.Lock(ctx); err != nil {
					errs <- err
					return
				}
				if n := holders.Add(1); n != 1 {
					errs <- errors.New("two holders at once")
				}
				if tok := m.Token(); tok <= last.Load() {
					errs <- errors.New("token not increasing")
				} else {
					last.Store(tok)
				}
				cycles.Add(1)
				holders.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if cycles.Load() != 400 {
		t.Fatalf("%d cycles, want 400", cycles.Load())
	}
}

func TestFIFO(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	holder := lock.NewMutex(newSession(t), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []int
	var got []<-chan error
	for i := range 3 {
		s := newSession(t)
		m := lock.NewMutex(s, name)
		got = append(got, async(func() error {
			if err := m.Lock(ctx); err != nil {
				return err
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			return m.Unlock(ctx)
		}))
		eventually(t, 5*time.Second, "waiter queued", func() bool { return countKeys(t, s, keys.KindLock, name, "w") == int64(i+2) })
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range got {
		if err := within(t, c, 10*time.Second, "waiters served"); err != nil {
			t.Fatal(err)
		}
	}
	if len(order) != 3 || order[0] != 0 || order[1] != 1 || order[2] != 2 {
		t.Fatalf("served in order %v, want [0 1 2]", order)
	}
}

func TestLeaseRevokedWhileHolding(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	m := lock.NewMutex(s, fresh(t))
	ctx := ctxT(t, 10*time.Second)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	done := m.Done()
	select {
	case <-done:
		t.Fatal("Done closed while held")
	default:
	}
	if _, err := srv.Client().Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, done, time.Second, "Done after the lease was revoked")
	resp, err := srv.Client().Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(fresh(t), "x")).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("IsOwner Txn succeeded after the lease was revoked: %v", err)
	}
	if err := m.Unlock(ctx); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Unlock after loss: %v, want ErrLost", err)
	}
}

func TestKeyDeletedWhileHolding(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	name := fresh(t)
	m := lock.NewMutex(s, name)
	ctx := ctxT(t, 10*time.Second)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	sp, _ := keys.New(s.Prefix(), keys.KindLock, name)
	if _, err := srv.Client().Delete(ctx, sp.Part("w"), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, m.Done(), 2*time.Second, "Done after the key was deleted")
	if err := m.Unlock(ctx); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Unlock after loss: %v, want ErrLost", err)
	}
}

func TestWaiterSessionLost(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	holder := lock.NewMutex(newSession(t), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t)
	got := async(func() error { return lock.NewMutex(s, name).Lock(ctx) })
	eventually(t, 5*time.Second, "waiter queued", func() bool { return countKeys(t, s, keys.KindLock, name, "w") == 2 })
	if _, err := srv.Client().Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	err := within(t, got, 3*time.Second, "waiter's Lock after its lease was revoked")
	if !errors.Is(err, session.ErrExpired) && !errors.Is(err, lock.ErrLost) {
		t.Fatalf("waiter's Lock: %v, want session.ErrExpired or ErrLost", err)
	}
	closedWithin(t, s.Done(), 2*time.Second, "session Done after revoke")
	if !errors.Is(s.Err(), session.ErrExpired) {
		t.Fatalf("session not expired after revoke: %v", s.Err())
	}
	holder.Unlock(ctx)
}

func TestWaiterKeyDeleted(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	holder := lock.NewMutex(newSession(t), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t)
	got := async(func() error { return lock.NewMutex(s, name).Lock(ctx) })
	eventually(t, 5*time.Second, "waiter queued", func() bool { return countKeys(t, s, keys.KindLock, name, "w") == 2 })
	sp, _ := keys.New(s.Prefix(), keys.KindLock, name)
	// The waiter's id starts with its lease; delete what it put.
	mine := sp.Key("w", fmt.Sprintf("%016x", int64(s.Lease())))
	if resp, err := srv.Client().Delete(ctx, mine, clientv3.WithPrefix()); err != nil || resp.Deleted != 1 {
		t.Fatalf("deleting the waiter's key: %v %v", resp, err)
	}
	if err := within(t, got, 3*time.Second, "waiter's Lock after its key was deleted"); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("waiter's Lock: %v, want ErrLost", err)
	}
	holder.Unlock(ctx)
}

func TestCancelledWaiterLeavesNoKey(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	s1 := newSession(t)
	holder := lock.NewMutex(s1, name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	s2 := newSession(t)
	got := async(func() error { return lock.NewMutex(s2, name).Lock(wctx) })
	eventually(t, 5*time.Second, "waiter queued", func() bool { return countKeys(t, s2, keys.KindLock, name, "w") == 2 })
	cancel()
	if err := within(t, got, 3*time.Second, "cancelled Lock"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock: %v, want context.Canceled", err)
	}
	if n := countKeys(t, s2, keys.KindLock, name, "w"); n != 1 {
		t.Fatalf("%d keys after the waiter was cancelled, want only the holder's", n)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lock.NewMutex(newSession(t), name).TryLock(ctx); err != nil {
		t.Fatalf("TryLock after the holder left and the waiter was cancelled: %v", err)
	}
}

func TestTryLockFailsLeavesNothing(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	s := newSession(t)
	holder := lock.NewMutex(s, name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	m := lock.NewMutex(newSession(t), name)
	if err := m.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock while held: %v, want ErrLocked", err)
	}
	if n := countKeys(t, s, keys.KindLock, name, "w"); n != 1 {
		t.Fatalf("%d keys after a failed TryLock, want 1", n)
	}
	if m.Token() != 0 {
		t.Fatal("Token non-zero after failed TryLock")
	}
	select {
	case <-m.Done():
	default:
		t.Fatal("Done of a Mutex that holds nothing is not closed")
	}
	holder.Unlock(ctx)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock when free: %v", err)
	}
	m.Unlock(ctx)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	root := fresh(t) + "/"
	s := newSession(t, session.WithPrefix(root))
	ctx := ctxT(t, 10*time.Second)
	for _, name := range []string{"", strings.Repeat("x", keys.MaxNameLen+1), "bad\xff"} {
		for what, f := range map[string]func() error{
			"Mutex.Lock":    func() error { return lock.NewMutex(s, name).Lock(ctx) },
			"Mutex.TryLock": func() error { return lock.NewMutex(s, name).TryLock(ctx) },
			"Mutex.Unlock":  func() error { return lock.NewMutex(s, name).Unlock(ctx) },
			"RWMutex.RLock": func() error { return lock.NewRWMutex(s, name).RLock(ctx) },
			"RWMutex.Lock":  func() error { return lock.NewRWMutex(s, name).Lock(ctx) },
			"Multi.Lock":    func() error { return lock.NewMulti(s, "ok", name).Lock(ctx) },
			"Do":            func() error { return lock.Do(ctx, s, name, func(context.Context) error { return nil }) },
		} {
			if err := f(); !errors.Is(err, lock.ErrInvalid) {
				t.Errorf("%s(%.20q): %v, want ErrInvalid", what, name, err)
			}
		}
	}
	if err := lock.NewMulti(s).Lock(ctx); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("NewMulti with no names: %v, want ErrInvalid", err)
	}
	many := make([]string, lock.MaxMultiNames+1)
	for i := range many {
		many[i] = strings.Repeat("n", i+1)
	}
	if err := lock.NewMulti(s, many...).Lock(ctx); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("NewMulti with too many names: %v, want ErrInvalid", err)
	}
	var nilSession *session.Session
	if err := lock.NewMutex(nilSession, "x").Lock(ctx); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("nil session: %v, want ErrInvalid", err)
	}
	if err := lock.NewRWMutex(nilSession, "x").RLock(ctx); !errors.Is(err, lock.ErrInvalid) {
		t.Errorf("nil session RLock: %v, want ErrInvalid", err)
	}
	if lock.NewMutex(nilSession, "x").Token() != 0 {
		t.Error("nil session Token non-zero")
	}
	lock.NewMutex(nilSession, "x").IsOwner() // must not panic
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := lock.NewMutex(s, "x").Lock(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v, want context.Canceled", err)
	}
	closed := newSession(t, session.WithPrefix(root))
	closed.Close()
	if err := lock.NewMutex(closed, "x").Lock(ctx); !errors.Is(err, session.ErrClosed) {
		t.Errorf("closed session: %v, want session.ErrClosed", err)
	}
	resp, err := srv.Client().Get(ctx, root, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), root+keys.KindSession+"/") {
			t.Errorf("stray key %q after bad input", kv.Key)
		}
	}
}

func TestKeyIsTheHeldKey(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newSession(t)
	m := lock.NewMutex(s, t.Name())
	if m.Key() != "" {
		t.Fatalf("Key before Lock = %q", m.Key())
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Unlock(ctx)
	resp, err := s.Client().Get(ctx, m.Key())
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].CreateRevision != m.Token() || clientv3.LeaseID(resp.Kvs[0].Lease) != s.Lease() {
		t.Fatalf("Key %q does not name the held key: %v %v", m.Key(), resp, err)
	}
}
