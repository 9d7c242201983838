package lock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestDoHoldsWhileFnRuns(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	s, other := newSession(t), newSession(t)
	boom := errors.New("boom")
	err := lock.Do(ctx, s, name, func(ctx context.Context) error {
		if err := lock.NewMutex(other, name).TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
			t.Errorf("TryLock inside Do: %v, want ErrLocked", err)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Do = %v, want fn's error", err)
	}
	if err := lock.NewMutex(other, name).TryLock(ctx); err != nil {
		t.Fatalf("TryLock after Do: %v", err)
	}
}

func TestDoCancelsFnWhenLockLost(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	s := newSession(t)
	started := make(chan struct{})
	got := async(func() error {
		return lock.Do(ctx, s, name, func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			if !errors.Is(context.Cause(ctx), lock.ErrLost) {
				t.Errorf("fn's ctx cause = %v, want ErrLost", context.Cause(ctx))
			}
			return ctx.Err()
		})
	})
	closedWithin(t, started, 5*time.Second, "fn started")
	if _, err := srv.Client().Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	err := within(t, got, 2*time.Second, "Do after the lease was revoked")
	if !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Do = %v, want ErrLost", err)
	}
	closedWithin(t, s.Done(), 2*time.Second, "session Done after revoke")
	if !errors.Is(s.Err(), session.ErrExpired) {
		t.Fatalf("session not expired: %v", s.Err())
	}
}

func TestDoCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 10*time.Second)
	holder := lock.NewMutex(newSession(t), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	ran := false
	err := lock.Do(wctx, newSession(t), name, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("Do with ctx ending while waiting: %v (fn ran: %v)", err, ran)
	}
	holder.Unlock(ctx)
}

func TestDoGivesFnTheFence(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newSession(t)
	err := lock.Do(ctx, s, t.Name(), func(ctx context.Context) error {
		tok, ok := lock.TokenFrom(ctx)
		if !ok || tok <= 0 {
			return fmt.Errorf("TokenFrom = %d, %v", tok, ok)
		}
		cmp, ok := lock.OwnerFrom(ctx)
		if !ok {
			return errors.New("no OwnerFrom")
		}
		resp, err := s.Client().Txn(ctx).If(cmp).Then(clientv3.OpPut("do-fenced/"+t.Name(), fmt.Sprint(tok))).Commit()
		if err != nil || !resp.Succeeded {
			return fmt.Errorf("guarded write: %v %v", resp, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lock.TokenFrom(context.Background()); ok {
		t.Fatal("TokenFrom outside Do")
	}
}
