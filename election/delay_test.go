package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keysUnder counts every key under root.
func keysUnder(t *testing.T, root string) int64 {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), root, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// A leader whose lease is revoked behind its back loses at once, and the
// candidate waiting next leads only a lock-delay later; a fresh candidate
// after a loss no one saw waits too.
func TestLockDelayAfterLeaderLoss(t *testing.T) {
	t.Parallel()
	const d = time.Second
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	a, b := newSession(t, srv.Client(), r), newSession(t, srv.Client(), r)
	leader := election.New(a, "e", election.WithLockDelay(d))
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	next := election.New(b, "e", election.WithLockDelay(d))
	got := campaignAsync(ctx, next, "b")
	eventually(t, 5*time.Second, "the candidate queued", func() bool { return len(candidates(t, r)) >= 2 })
	start := time.Now()
	if _, err := srv.Client().Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(leader.Done(), 5*time.Second) {
		t.Fatal("the old leader's Done did not close")
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the next candidate never led")
	}
	if waited := time.Since(start); waited < d {
		t.Fatalf("the next leader's Campaign returned %v after the loss, before the lock-delay of %v", waited, d)
	}
	if next.Token() <= 0 {
		t.Fatal("no token")
	}
	// Now its own loss, unseen: a fresh candidate waits for it too.
	start = time.Now()
	if _, err := srv.Client().Revoke(ctx, b.Lease()); err != nil {
		t.Fatal(err)
	}
	c := newSession(t, srv.Client(), r)
	fresh := election.New(c, "e", election.WithLockDelay(d))
	if err := fresh.Campaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < d {
		t.Fatalf("a fresh Campaign led %v after an unseen loss, before the lock-delay", waited)
	}
	if err := fresh.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// A Resign hands over at once, with a lock-delay no test would survive,
// and an election used cleanly leaves nothing behind.
func TestLockDelayResignIsNotDelayed(t *testing.T) {
	t.Parallel()
	const d = time.Minute
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	a, b := newSession(t, srv.Client(), r), newSession(t, srv.Client(), r)
	leader := election.New(a, "e", election.WithLockDelay(d))
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	next := election.New(b, "e", election.WithLockDelay(d))
	got := campaignAsync(ctx, next, "b")
	eventually(t, 5*time.Second, "the candidate queued", func() bool { return len(candidates(t, r)) >= 2 })
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handover waited: a clean Resign must not be delayed")
	}
	if err := next.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if n := keysUnder(t, r+"election/"); n != 0 {
		t.Fatalf("%d keys left after clean terms", n)
	}
}

func TestLockDelayBadValue(t *testing.T) {
	t.Parallel()
	r := root(t)
	s := newSession(t, srv.Client(), r)
	err := election.New(s, "e", election.WithLockDelay(10*time.Millisecond)).Campaign(ctxT(t, 5*time.Second), "v")
	if !errors.Is(err, election.ErrInvalid) {
		t.Fatalf("Campaign with a 10ms lock-delay: %v, want ErrInvalid", err)
	}
	err = election.Run(ctxT(t, 5*time.Second), srv.Client(), "e", "v", func(ctx context.Context) error { return nil },
		election.WithPrefix(r), election.WithLockDelay(-time.Second))
	if !errors.Is(err, election.ErrInvalid) {
		t.Fatalf("Run with a negative lock-delay: %v, want ErrInvalid", err)
	}
}
