package semaphore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/span/spantest"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/codes"
)

// Permits are a wait span and a hold span with the name, the permit's
// token and weight and the outcome: granted and released; a cancelled
// wait; a TryAcquire that finds no permits; a permit lost with its
// session's lease.
func TestTracePermits(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	ctx := ctxT(t, 20*time.Second)
	traced := func() *session.Session {
		s, err := session.New(ctx, srv.Client(), session.WithPrefix(root(t)), session.WithTracerProvider(rec.TP))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := traced(), traced()
	ctx, parent := rec.TP.Tracer("test").Start(ctx, "caller")
	sem := semaphore.New(a, "gpu", 2)
	p, err := sem.Acquire(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	token := p.Token()

	other := semaphore.New(b, "gpu", 2)
	wctx, cancel := context.WithCancel(ctx)
	c := acquireAsync(wctx, other, 1)
	waiting(t, sem, 1)
	cancel()
	if r := within(t, c, 5*time.Second); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", r.err)
	}
	if _, err := other.TryAcquire(ctx, 1); !errors.Is(err, semaphore.ErrNoPermits) {
		t.Fatalf("TryAcquire with no permits: %v", err)
	}
	waits := rec.Wait(t, 5*time.Second, "coord.semaphore.wait", 3)
	by := map[string]int{}
	for _, w := range waits {
		o := spantest.Attr(w, span.Outcome).AsString()
		by[o]++
		if o == span.Granted && (spantest.Attr(w, span.Token).AsInt64() != token || spantest.Attr(w, span.Weight).AsInt64() != 2) {
			t.Errorf("granted wait: token %v weight %v, want %d, 2", spantest.Attr(w, span.Token), spantest.Attr(w, span.Weight), token)
		}
		if w.Status().Code == codes.Error {
			t.Errorf("wait %q: status Error", o)
		}
		if !spantest.ChildOf(w, parent.SpanContext()) {
			t.Errorf("wait %q is not a child of the caller's span", o)
		}
		if got := spantest.Attr(w, span.Name).AsString(); got != "gpu" {
			t.Errorf("wait %q: name %q", o, got)
		}
	}
	if by[span.Granted] != 1 || by[span.Cancelled] != 1 || by[span.Busy] != 1 {
		t.Fatalf("wait outcomes %v, want one granted, cancelled and busy", by)
	}

	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	h := rec.Wait(t, 5*time.Second, "coord.semaphore.hold", 1)[0]
	if o := spantest.Attr(h, span.Outcome).AsString(); o != span.Released || spantest.Attr(h, span.Token).AsInt64() != token {
		t.Fatalf("released permit: %q token %v, want %q %d", o, spantest.Attr(h, span.Token), span.Released, token)
	}

	q, err := other.Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().Revoke(ctx, b.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-q.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the permit's Done did not fire after its lease was revoked")
	}
	holds := rec.Wait(t, 5*time.Second, "coord.semaphore.hold", 2)
	lost := holds[1]
	if o := spantest.Attr(lost, span.Outcome).AsString(); o != span.Lost || lost.Status().Code != codes.Error || spantest.Attr(lost, span.Token).AsInt64() != q.Token() {
		t.Fatalf("lost permit: %q %v token %v, want %q Error %d", o, lost.Status(), spantest.Attr(lost, span.Token), span.Lost, q.Token())
	}
}
