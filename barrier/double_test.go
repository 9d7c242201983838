package barrier_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/session"
)

// TestDoubleRoundsWithRevokedParticipant runs 5 participants through 3
// rounds. Nobody may return from Enter before all 5 of its round have
// called Enter, nor from Leave before all 5 have called Leave or died. In
// round 2, after everyone entered, one participant's session is revoked:
// the others' Leave must then complete without it, and it rejoins round 3
// with a new session.
func TestDoubleRoundsWithRevokedParticipant(t *testing.T) {
	t.Parallel()
	const n, rounds, victim = 5, 3, 2
	ctx := ctxT(t, 60*time.Second)
	name := fresh(t)
	var arrived, left [rounds + 1]atomic.Int32
	enteredR2 := make(chan struct{}, n)
	revoked := make(chan struct{})
	sessions := make([]*session.Session, n)
	for p := range sessions {
		sessions[p] = newSession(t)
	}
	var wg sync.WaitGroup
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sessions[p]
			d := barrier.NewDouble(s, name, n)
			// The last participant lags before Enter and before Leave, so the
			// others really wait for it at both gates.
			lag := func() {
				if p == n-1 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			for r := 1; r <= rounds; r++ {
				lag()
				arrived[r].Add(1)
				for {
					err := d.Enter(ctx)
					if err == nil {
						break
					}
					// Only the victim, rejoining, can find round 2 still
					// leaving; it retries.
					if !errors.Is(err, barrier.ErrFull) || p != victim || r != 3 {
						t.Errorf("participant %d round %d: Enter: %v", p, r, err)
						return
					}
					select {
					case <-ctx.Done():
						t.Errorf("participant %d round %d: %v", p, r, err)
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
				if got := arrived[r].Load(); got != n {
					t.Errorf("participant %d round %d: entered with %d of %d arrived", p, r, got, n)
				}
				if r == 2 {
					enteredR2 <- struct{}{}
				}
				if r == 2 && p == victim {
					select {
					case <-s.Done():
					case <-ctx.Done():
						t.Error("victim's session did not end")
						return
					}
					<-revoked
					if err := d.Leave(ctx); !errors.Is(err, session.ErrExpired) {
						t.Errorf("victim Leave = %v, want session.ErrExpired", err)
					}
					s = newSession(t)
					d = barrier.NewDouble(s, name, n)
					continue
				}
				lag()
				left[r].Add(1)
				if err := d.Leave(ctx); err != nil {
					t.Errorf("participant %d round %d: Leave: %v", p, r, err)
					return
				}
				if got := left[r].Load(); got != n {
					t.Errorf("participant %d round %d: left with %d of %d gone", p, r, got, n)
				}
			}
		}()
	}
	// Mid-round 2: everyone is in; kill the victim's session.
	for i := 0; i < n; i++ {
		select {
		case <-enteredR2:
		case <-ctx.Done():
			t.Fatal("round 2 never filled")
		}
	}
	left[2].Add(1) // counted as gone before it goes
	if _, err := srv.Client().Revoke(ctx, sessions[victim].Lease()); err != nil {
		t.Fatal(err)
	}
	close(revoked)
	wg.Wait()
	if n := keysUnder(t, srv.Client(), "coord/dbarrier/"+name+"/p/"); n != 0 {
		t.Errorf("%d participant keys left after the last round", n)
	}
}

func TestDoubleBeyondCountGetsErrFull(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	a := barrier.NewDouble(newSession(t), name, 2)
	b := barrier.NewDouble(newSession(t), name, 2)
	errc := start(func() error { return a.Enter(ctx) })
	notYet(t, errc, 200*time.Millisecond) // one of two: Enter blocks
	if err := b.Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	extra := barrier.NewDouble(newSession(t), name, 2)
	if err := extra.Enter(ctx); !errors.Is(err, barrier.ErrFull) {
		t.Fatalf("third Enter = %v, want ErrFull", err)
	}
	if n := keysUnder(t, srv.Client(), "coord/dbarrier/"+name+"/p/"); n != 2 {
		t.Fatalf("%d participant keys, want 2: the refused one left its key", n)
	}
	if err := a.Enter(ctx); !errors.Is(err, barrier.ErrEntered) {
		t.Fatalf("Enter twice = %v, want ErrEntered", err)
	}
	// a leaves first and waits for b; the extra is still refused while
	// the round is leaving.
	errc = start(func() error { return a.Leave(ctx) })
	notYet(t, errc, 200*time.Millisecond)
	if err := extra.Enter(ctx); !errors.Is(err, barrier.ErrFull) {
		t.Fatalf("Enter while the round leaves = %v, want ErrFull", err)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a.Leave(ctx); !errors.Is(err, barrier.ErrNotEntered) {
		t.Fatalf("Leave twice = %v, want ErrNotEntered", err)
	}
	// The next round: the refused participant now gets in.
	errc = start(func() error { return extra.Enter(ctx) })
	if err := a.Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, errc, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A participant that dies before its round is full is removed, and a
// replacement completes the round.
func TestDoubleCrashBeforeFullIsReplaced(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	s1, s2 := newSession(t), newSession(t)
	first := start(func() error { return barrier.NewDouble(s1, name, 3).Enter(ctx) })
	dying := start(func() error { return barrier.NewDouble(s2, name, 3).Enter(ctx) })
	for keysUnder(t, srv.Client(), "coord/dbarrier/"+name+"/p/") < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("participants did not enter")
		case <-time.After(5 * time.Millisecond):
		}
	}
	srv.Client().Revoke(ctx, s2.Lease())
	if err := within(t, dying, 5*time.Second); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("dead participant's Enter = %v, want session.ErrExpired", err)
	}
	third := barrier.NewDouble(newSession(t), name, 3)
	thirdc := start(func() error { return third.Enter(ctx) })
	notYet(t, first, 200*time.Millisecond) // two live of three
	if err := barrier.NewDouble(newSession(t), name, 3).Enter(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan error{first, thirdc} {
		if err := within(t, c, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDoubleCancelledEnterLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	d := barrier.NewDouble(newSession(t), name, 2)
	ectx, cancel := context.WithCancel(ctx)
	errc := start(func() error { return d.Enter(ectx) })
	notYet(t, errc, 200*time.Millisecond)
	cancel()
	if err := within(t, errc, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enter = %v, want context.Canceled", err)
	}
	if n := keysUnder(t, srv.Client(), "coord/dbarrier/"+name+"/p/"); n != 0 {
		t.Fatalf("%d participant keys left by a cancelled Enter", n)
	}
	// A later participant is not counted with the cancelled one.
	late := start(func() error { return barrier.NewDouble(newSession(t), name, 2).Enter(ctx) })
	notYet(t, late, 200*time.Millisecond)
	if err := d.Enter(ctx); err != nil { // the cancelled one may try again
		t.Fatal(err)
	}
	if err := within(t, late, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestDoubleBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	root := fresh(t)
	s := newSession(t, session.WithPrefix(root))
	bad := map[string]*barrier.DoubleBarrier{
		"nil session":  barrier.NewDouble(nil, "x", 2),
		"empty name":   barrier.NewDouble(s, "", 2),
		"long name":    barrier.NewDouble(s, strings.Repeat("x", 513), 2),
		"invalid utf8": barrier.NewDouble(s, "\xff", 2),
		"count 0":      barrier.NewDouble(s, "x", 0),
	}
	for what, d := range bad {
		if err := d.Enter(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Enter = %v, want ErrInvalid", what, err)
		}
		if err := d.Leave(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Leave = %v", what, err)
		}
	}
	d := barrier.NewDouble(s, "x", 2)
	if err := d.Leave(ctx); !errors.Is(err, barrier.ErrNotEntered) {
		t.Errorf("Leave before Enter = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Enter(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Enter = %v", err)
	}
	closed := newSession(t, session.WithPrefix(root))
	closed.Close()
	if err := barrier.NewDouble(closed, "x", 2).Enter(ctx); !errors.Is(err, session.ErrClosed) {
		t.Errorf("closed session: %v", err)
	}
	if n := keysUnder(t, srv.Client(), root+"/dbarrier/"); n != 0 {
		t.Errorf("%d stray keys", n)
	}
	// Another count for the same name.
	name := fresh(t)
	a := barrier.NewDouble(newSession(t), name, 2)
	errc := start(func() error { return a.Enter(ctx) })
	notYet(t, errc, 100*time.Millisecond)
	if err := barrier.NewDouble(newSession(t), name, 3).Enter(ctx); !errors.Is(err, barrier.ErrCountMismatch) {
		t.Errorf("other count = %v, want ErrCountMismatch", err)
	}
}
