package election_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
)

// handoverCost measures, on a counted client of its own, the RPCs and the
// bytes read of one contended Campaign (behind a leader, who resigns) and
// its Resign, with behind candidates queued after it.
func handoverCost(t *testing.T, behind int) (rpcs, bytes int64) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	r := root(t)
	leader := election.New(newSession(t, srv.Client(), r), "api")
	if err := leader.Campaign(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, cli, r)
	// The measured process has followed this election before (its mirror
	// of the candidates is open).
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := election.New(s, "api").Campaign(wctx, "warm"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("warm-up campaign: %v", err)
	}
	cancel()
	eventually(t, 5*time.Second, "the warm-up gone", func() bool { return countCandidates(t, r) == 1 })
	c.Reset()
	measured := election.New(s, "api")
	got := campaignAsync(ctx, measured, "measured")
	eventually(t, 5*time.Second, "measured candidate queued", func() bool { return countCandidates(t, r) == 2 })
	others := newSession(t, srv.Client(), r)
	pctx, unpark := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { unpark(); wg.Wait() }()
	for range behind {
		e := election.New(others, "api")
		wg.Go(func() { e.Campaign(pctx, "behind") })
	}
	eventually(t, 30*time.Second, "the line behind queued", func() bool { return countCandidates(t, r) == 2+behind })
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the measured candidate did not lead within 5s of the resignation")
	}
	if err := measured.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	return c.Total("Txn", "DeleteRange", "Range", "Watch.Create"), c.Bytes()
}

// A contended Campaign and its Resign cost the same RPCs and bytes with 0
// and 200 candidates behind: its Txn reads two keys of the line in key
// order, and the handover is one watch event, no read.
func TestHandoverCostDoesNotGrowWithCandidates(t *testing.T) {
	t.Parallel()
	r0, b0 := handoverCost(t, 0)
	r1, b1 := handoverCost(t, 200)
	t.Logf("0 behind: %d RPCs, %d bytes read; 200 behind: %d RPCs, %d bytes read", r0, b0, r1, b1)
	if r1 != r0 || b1 > b0+64 || r0 != 2 {
		t.Fatalf("with 200 candidates behind: %d RPCs and %d bytes; with none: %d and %d; want 2 RPCs each", r1, b1, r0, b0)
	}
}
