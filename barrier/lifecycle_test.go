package barrier_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
)

// An Enter whose answer is lost leaves no ghost participant: its key is
// deleted (and fenced against the late create), so the others neither
// start with a participant that is not there nor wait in Leave for one.
func TestEnterWhoseAnswerIsLostLeavesNoGhost(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	name := fresh(t)
	first := barrier.NewDouble(newSession(t), name, 2)
	entered := start(func() error { return first.Enter(ctx) })

	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s, err := session.New(ctx, cli, session.WithTTL(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	marker := func() int64 {
		resp, err := srv.Client().Get(ctxT(t, 5*time.Second), fmt.Sprintf("%ssession/%016x", s.Prefix(), int64(s.Lease())))
		if err != nil || len(resp.Kvs) == 0 {
			t.Fatalf("marker: %v", err)
		}
		return resp.Kvs[0].ModRevision
	}
	before := marker()
	p.Delay(time.Second)
	if err := barrier.NewDouble(s, name, 2).Enter(ctxT(t, 300*time.Millisecond)); err == nil {
		t.Fatal("Enter through a 1s delay returned within 300ms")
	}
	// The delayed Enter lands, then its cleanup (which moves the session's
	// fence); the first participant may see the round fill in between.
	deadline := time.Now().Add(10 * time.Second)
	var early error
	filled := false
	for !filled && marker() == before {
		select {
		case early = <-entered:
			filled = true
		case <-time.After(20 * time.Millisecond): // polling a condition, with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed Enter's cleanup did not land within 10s")
		}
	}
	if !filled {
		select {
		case early = <-entered:
			filled = true
		default:
		}
	}
	p.Restore()
	if filled {
		// The failed Enter's key existed for a moment and filled the
		// round: it counts as a participant that entered and left at once,
		// so Leave must not wait for it (it used to wait until that
		// session ended).
		if early != nil {
			t.Fatal(early)
		}
		if err := within(t, start(func() error { return first.Leave(ctx) }), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return
	}
	notYet(t, entered, 300*time.Millisecond)
	second := barrier.NewDouble(newSession(t), name, 2)
	if err := second.Enter(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, entered, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	left := start(func() error { return first.Leave(ctx) })
	if err := second.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, left, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A barrier and a session of different roots refuse each other.
func TestHoldWithRefusesASessionOfAnotherRoot(t *testing.T) {
	t.Parallel()
	s := newSession(t, session.WithPrefix("app/"))
	b := barrier.New(srv.Client(), fresh(t))
	if err := b.HoldWith(ctxT(t, 5*time.Second), s); !errors.Is(err, barrier.ErrInvalid) {
		t.Fatalf("HoldWith of another root: %v, want ErrInvalid", err)
	}
	b = barrier.New(srv.Client(), fresh(t), barrier.WithPrefix("app/"))
	if err := b.HoldWith(ctxT(t, 5*time.Second), s); err != nil {
		t.Fatal(err)
	}
}
