package election_test

import (
	"context"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
)

// next receives one Leader from ch within 5 s.
func next(t *testing.T, ch <-chan election.Leader) election.Leader {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("Observe closed its channel before ctx ended")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("Observe sent nothing within 5s")
	}
	return election.Leader{}
}

func expect(t *testing.T, ch <-chan election.Leader, want ...election.Leader) {
	t.Helper()
	for i, w := range want {
		if got := next(t, ch); got != w {
			t.Fatalf("observed #%d = %+v, want %+v", i, got, w)
		}
	}
}

func leading(e *election.Election, v string) election.Leader {
	return election.Leader{Value: v, Token: e.Token()}
}

// TestObserveExactSequenceThroughCompaction changes leaders and values,
// compacting in between, while the observer does not read; then it
// checks that every state arrives, in order, exactly once.
//
// Not parallel, here and below: compactions would break other tests'
// exactness, and theirs this one's.
func TestObserveExactSequenceThroughCompaction(t *testing.T) {
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	octx, ocancel := context.WithCancel(ctx)
	ch := election.New(newSession(t, srv.Client(), r), "seq").Observe(octx)
	expect(t, ch, election.Leader{})

	cand := func() *election.Election { return election.New(newSession(t, srv.Client(), r), "seq") }
	a, b, c, d := cand(), cand(), cand(), cand()
	if err := a.Campaign(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	ta := a.Token()
	if err := a.Proclaim(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	resB := campaignAsync(ctx, b, "b1")
	eventually(t, 5*time.Second, "b queued", func() bool { return countCandidates(t, r) == 2 })
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-resB; err != nil {
		t.Fatal(err)
	}
	tb := b.Token()
	if err := b.Proclaim(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	resC := campaignAsync(ctx, c, "c1")
	eventually(t, 5*time.Second, "c queued", func() bool { return countCandidates(t, r) == 2 })
	if err := srv.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	// b and c leave back to back: c's term is short, and still observed.
	if err := b.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-resC; err != nil {
		t.Fatal(err)
	}
	tc := c.Token()
	if err := c.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.Campaign(ctx, "d1"); err != nil {
		t.Fatal(err)
	}
	expect(t, ch,
		election.Leader{Value: "a1", Token: ta},
		election.Leader{Value: "a2", Token: ta},
		election.Leader{Value: "b1", Token: tb},
		election.Leader{Value: "b2", Token: tb},
		election.Leader{Value: "c1", Token: tc},
		election.Leader{},
		leading(d, "d1"),
	)
	// Nothing was sent twice or out of turn: the next state is the next change.
	if err := d.Proclaim(ctx, "d2"); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, leading(d, "d2"))
	if !(ta < tb && tb < tc && tc < d.Token()) {
		t.Fatalf("tokens not increasing: %d %d %d %d", ta, tb, tc, d.Token())
	}
	ocancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("Observe sent after ctx ended")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Observe did not close within 5s of ctx ending")
	}
}

// TestObserveSurvivesReconnect cuts the observer's connection while the
// leadership changes, with and without a compaction in between.
func TestObserveSurvivesReconnect(t *testing.T) {
	r := root(t)
	ctx := ctxT(t, 40*time.Second)
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ch := election.New(newSession(t, cli, r), "reconnect").Observe(ctx)
	expect(t, ch, election.Leader{})
	a := election.New(newSession(t, srv.Client(), r), "reconnect")
	b := election.New(newSession(t, srv.Client(), r), "reconnect")
	if err := a.Campaign(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, leading(a, "a1"))

	// Cut off, without compaction: the watch resumes where it stopped and
	// every change arrives.
	p.Refuse()
	p.Reset()
	if err := a.Proclaim(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	resB := campaignAsync(ctx, b, "b1")
	eventually(t, 5*time.Second, "b queued", func() bool { return countCandidates(t, r) == 2 })
	ta := a.Token()
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-resB; err != nil {
		t.Fatal(err)
	}
	p.Restore()
	expect(t, ch, election.Leader{Value: "a2", Token: ta}, leading(b, "b1"))

	// Cut off across a compaction: the history is gone, so Observe re-reads;
	// it may skip b2 but must end at b3, in order, with no repeats.
	p.Refuse()
	p.Reset()
	for _, v := range []string{"b2", "b3"} {
		if err := b.Proclaim(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	p.Restore()
	got := next(t, ch)
	if got == leading(b, "b2") {
		got = next(t, ch)
	}
	if got != leading(b, "b3") {
		t.Fatalf("after the compaction observed %+v, want b3", got)
	}
	if err := b.Proclaim(ctx, "b4"); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, leading(b, "b4"))
}
