package lock_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The tests in this file each check one promise of the shared lifecycle
// that a review found broken in an earlier version, and fail without it.

// MultiMutex takes MaxMultiNames names: its Txn fits etcd's default limit
// of 128 operations (nested Txns used to spend the outer Txn's budget, so
// 64 names always failed).
func TestMultiMutexTakesMaxMultiNames(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	ctx := ctxT(t, 10*time.Second)
	names := make([]string, lock.MaxMultiNames)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%02d", fresh(t), i)
	}
	m := lock.NewMulti(s, names...)
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock of %d names: %v", len(names), err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock of %d names: %v", len(names), err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// Unlock of a lock already known lost returns ErrLost at once, without
// touching the network, which may be what lost it.
func TestUnlockAfterKnownLossReturnsAtOnce(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s := sessionOn(t, cli, session.WithTTL(20*time.Second))
	name := fresh(t)
	m := lock.NewMutex(s, name)
	if err := m.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().Delete(ctxT(t, 5*time.Second), m.Key()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, m.Done(), 5*time.Second, "Done after the key was deleted")
	p.Blackhole()
	defer p.Restore()
	start := time.Now()
	err = m.Unlock(ctxT(t, 10*time.Second))
	if !errors.Is(err, lock.ErrLost) || time.Since(start) > time.Second {
		t.Fatalf("Unlock of a lost lock = %v after %v, want ErrLost at once", err, time.Since(start))
	}
}

// Cancelled and timed-out waits leave nothing behind in etcd, not even a
// mark per wait: 200 timed-out Locks on one session leave only the
// session's own key.
func TestCancelledWaitsLeaveNothingBehind(t *testing.T) {
	t.Parallel()
	root := fmt.Sprintf("t-%s/", strings.ToLower(fresh(t)))
	holder := newSession(t, session.WithPrefix(root))
	s := newSession(t, session.WithPrefix(root))
	name := fresh(t)
	if err := lock.NewMutex(holder, name).Lock(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		err := lock.NewMutex(s, name).Lock(ctx)
		cancel()
		if err == nil {
			t.Fatal("Lock of a held lock succeeded")
		}
	}
	eventually(t, 10*time.Second, "no key of the waiting session but its own", func() bool {
		// Not keys-only: that leaves out each key's lease.
		resp, err := srv.Client().Get(ctxT(t, 5*time.Second), root, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if clientv3.LeaseID(kv.Lease) == s.Lease() && !strings.HasPrefix(string(kv.Key), root+keys.KindSession+"/") {
				return false
			}
		}
		return true
	})
}

// A held lock whose etcd client is closed is reported lost at once, not
// when its session's deadline passes (a closed client used to make the
// lock's watch spin, reopening on a closed channel, until then).
func TestClosedClientEndsHoldAtOnce(t *testing.T) {
	t.Parallel()
	cli, err := srv.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	s := sessionOn(t, cli, session.WithTTL(10*time.Second))
	m := lock.NewMutex(s, fresh(t))
	if err := m.Lock(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	done := m.Done()
	cli.Close()
	closedWithin(t, done, time.Second, "Done after the client closed")
	if err := s.Err(); !errors.Is(err, session.ErrExpired) || !strings.Contains(err.Error(), "client was closed") {
		t.Fatalf("session: %v, want ErrExpired saying the client was closed", err)
	}
}

// A lock lost while held no longer counts as held: its Token is 0 and
// Lock may be called again without an Unlock first.
func TestLostLockCanBeTakenAgain(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	m := lock.NewMutex(s, fresh(t))
	ctx := ctxT(t, 10*time.Second)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lost := m.Token()
	if _, err := srv.Client().Delete(ctx, m.Key()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, m.Done(), 5*time.Second, "Done after the key was deleted")
	if tok := m.Token(); tok != 0 {
		t.Fatalf("Token after the loss = %d, want 0", tok)
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock after a loss: %v, want the lock taken again", err)
	}
	if m.Token() <= lost {
		t.Fatalf("new token %d not above the lost one %d", m.Token(), lost)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// A waiter whose session's lease is revoked gets an error wrapping
// session.ErrExpired (as etcd's Mutex returns ErrSessionExpired), not
// only "own key deleted".
func TestRevokedWaiterSeesSessionExpired(t *testing.T) {
	t.Parallel()
	holder := newSession(t)
	name := fresh(t)
	if err := lock.NewMutex(holder, name).Lock(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s := newSession(t)
		m := lock.NewMutex(s, name)
		errc := async(func() error { return m.Lock(ctxT(t, 20*time.Second)) })
		eventually(t, 5*time.Second, "waiter queued", func() bool { return countKeys(t, s, keys.KindLock, name, "w") == 2 })
		if _, err := srv.Client().Revoke(ctxT(t, 5*time.Second), s.Lease()); err != nil {
			t.Fatal(err)
		}
		err := within(t, errc, 5*time.Second, "revoked waiter")
		if !errors.Is(err, session.ErrExpired) {
			t.Fatalf("run %d: revoked waiter got %v, want session.ErrExpired", i, err)
		}
	}
}

// No request coord sends carries a nested Txn (etcd before 3.5.26 and
// 3.6.9 does not check permissions on nested ops), and on an auth-enabled
// server a user who may only read coord's root cannot take a lock.
func TestNoNestedTxnAndRBACHolds(t *testing.T) {
	t.Parallel()
	own := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithBcryptCost(4)) // bcrypt.MinCost: logins are not what this tests
	ctx := ctxT(t, 60*time.Second)
	if err := etcdtest.EnableAuth(ctx, own.Client(), "rootpw"); err != nil {
		t.Fatal(err)
	}
	root, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := etcdtest.AddUser(ctx, root, "app", "apppw", "coord/", true); err != nil {
		t.Fatal(err)
	}
	if err := etcdtest.AddUser(ctx, root, "reader", "readerpw", "coord/", false); err != nil {
		t.Fatal(err)
	}
	c := etcdtest.NewCounter()
	app, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("app", "apppw"), etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	s := sessionOn(t, app)
	holder := lock.NewMutex(s, "rbac")
	if err := holder.Lock(ctx); err != nil {
		t.Fatalf("a readwrite user: %v", err)
	}
	waiter := lock.NewMutex(s, "rbac")
	errc := async(func() error { return waiter.Lock(ctx) })
	eventually(t, 5*time.Second, "waiter queued", func() bool {
		resp, err := root.Get(ctx, "coord/lock/rbac/w/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	})
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second, "waiter"); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.Get("Txn.Nested"); n != 0 {
		t.Fatalf("coord sent %d Txns with a nested Txn (%s)", n, c)
	}

	reader, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("reader", "readerpw"))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	_, err = session.New(ctx, reader)
	if !errors.Is(err, rpctypes.ErrPermissionDenied) || !etcderr.Refused(err) {
		t.Fatalf("a read-only user's session: %v, want permission denied", err)
	}
	if resp, _ := root.Get(ctx, "coord/lock/", clientv3.WithPrefix(), clientv3.WithCountOnly()); resp.Count != 0 {
		t.Fatalf("%d lock keys left", resp.Count)
	}
}
