package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/span/spantest"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/codes"
)

// Campaigning and leading are spans with the election's name, the term's
// token and the outcome: a campaign that wins and a leadership that
// Resign ends; a campaign cancelled while another leads; a leadership
// lost with its session's lease.
func TestTraceCampaignAndLead(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	a := newSession(t, srv.Client(), r, session.WithTracerProvider(rec.TP))
	b := newSession(t, srv.Client(), r, session.WithTracerProvider(rec.TP))
	ctx, parent := rec.TP.Tracer("test").Start(ctx, "caller")

	ea := election.New(a, "api")
	if err := ea.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	token := ea.Token()
	camp := rec.Wait(t, 5*time.Second, "coord.election.campaign", 1)[0]
	if o := spantest.Attr(camp, span.Outcome).AsString(); o != span.Elected || spantest.Attr(camp, span.Token).AsInt64() != token || token == 0 {
		t.Fatalf("won campaign: %q token %v, want %q %d", o, spantest.Attr(camp, span.Token), span.Elected, token)
	}
	if !spantest.ChildOf(camp, parent.SpanContext()) || spantest.Attr(camp, span.Name).AsString() != "api" {
		t.Fatalf("campaign span: parent %v name %v", camp.Parent().SpanID(), spantest.Attr(camp, span.Name))
	}

	eb := election.New(b, "api")
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eb.Campaign(cctx, "b") }()
	eventually(t, 5*time.Second, "b campaigns", func() bool { return countCandidates(t, r) == 2 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled campaign: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled campaign did not return")
	}
	camps := rec.Wait(t, 5*time.Second, "coord.election.campaign", 2)
	if o := spantest.Attr(camps[1], span.Outcome).AsString(); o != span.Cancelled || camps[1].Status().Code == codes.Error {
		t.Fatalf("cancelled campaign: %q %v", o, camps[1].Status())
	}

	if err := ea.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	lead := rec.Wait(t, 5*time.Second, "coord.election.lead", 1)[0]
	if o := spantest.Attr(lead, span.Outcome).AsString(); o != span.Released || spantest.Attr(lead, span.Token).AsInt64() != token {
		t.Fatalf("resigned lead: %q token %v, want %q %d", o, spantest.Attr(lead, span.Token), span.Released, token)
	}
	if !spantest.LinkedTo(lead, camp.SpanContext()) || !spantest.ChildOf(lead, parent.SpanContext()) {
		t.Fatal("the lead span is not the caller's child linked to its campaign")
	}

	if err := eb.Campaign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	token = eb.Token()
	if _, err := srv.Client().Revoke(ctx, b.Lease()); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(eb.Done(), 5*time.Second) {
		t.Fatal("leadership not lost after the lease's revocation")
	}
	leads := rec.Wait(t, 5*time.Second, "coord.election.lead", 2)
	if o := spantest.Attr(leads[1], span.Outcome).AsString(); o != span.Lost || leads[1].Status().Code != codes.Error || spantest.Attr(leads[1], span.Token).AsInt64() != token {
		t.Fatalf("lost lead: %q %v token %v, want %q Error %d", o, leads[1].Status(), spantest.Attr(leads[1], span.Token), span.Lost, token)
	}
}
