package queue_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/span/spantest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// A claim is a span with the message's token and id; a claim cancelled
// on an empty queue ends "cancelled"; under Consume every message is a
// handle span, a child of Consume's caller's span, carried by the
// handler's ctx, ending acked, nacked or dead_lettered by what the
// handler returned (or "settled" when it settled the message itself).
func TestTraceClaimAndHandle(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	ctx := ctxT(t, 30*time.Second)
	s, err := session.New(ctx, srv.Client(), session.WithTracerProvider(rec.TP))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	name := qname(t, "trace")
	q := queue.New(srv.Client(), name)
	pctx, parent := rec.TP.Tracer("test").Start(ctx, "caller")

	id := enqueue(t, q, "one")
	m, err := q.Claim(pctx, s)
	if err != nil {
		t.Fatal(err)
	}
	claim := rec.Wait(t, 5*time.Second, "coord.queue.claim", 1)[0]
	if o := spantest.Attr(claim, span.Outcome).AsString(); o != span.Claimed ||
		spantest.Attr(claim, span.Token).AsInt64() != m.Token() || spantest.Attr(claim, span.ID).AsString() != id {
		t.Fatalf("claim span: %q token %v id %v, want %q %d %s", o, spantest.Attr(claim, span.Token), spantest.Attr(claim, span.ID), span.Claimed, m.Token(), id)
	}
	if !spantest.ChildOf(claim, parent.SpanContext()) || spantest.Attr(claim, span.Name).AsString() != name {
		t.Fatal("the claim span is not the caller's child, or lacks the queue's name")
	}
	if err := m.Ack(ctx); err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := q.Claim(cctx, s); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim on an empty queue past its deadline: %v", err)
	}
	cancel()
	if c := rec.Wait(t, 5*time.Second, "coord.queue.claim", 2)[1]; spantest.Attr(c, span.Outcome).AsString() != span.Cancelled || c.Status().Code == codes.Error {
		t.Fatalf("timed-out claim: %q %v", spantest.Attr(c, span.Outcome).AsString(), c.Status())
	}

	want := map[string]string{"ok": span.Acked, "again": span.Nacked, "never": span.DeadLettered, "self": span.Settled}
	ids := map[string]string{}
	for p := range want {
		ids[enqueue(t, q, p)] = p
	}
	var mu sync.Mutex
	inHandler := map[string]trace.SpanContext{} // id → the span the handler's ctx carries
	consumeCtx, stop := context.WithCancel(pctx)
	defer stop()
	consumed := make(chan error, 1)
	go func() {
		consumed <- q.Consume(consumeCtx, s, func(ctx context.Context, m *queue.Message) error {
			mu.Lock()
			inHandler[m.ID] = trace.SpanContextFromContext(ctx)
			mu.Unlock()
			switch string(m.Payload) {
			case "again":
				return queue.RetryAfter(time.Hour, errors.New("not yet"))
			case "never":
				return queue.Permanent(errors.New("bad message"))
			case "self":
				return m.Ack(ctx)
			}
			return nil
		})
	}()
	handles := rec.Wait(t, 10*time.Second, "coord.queue.handle", 4)
	stop()
	if err := <-consumed; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume: %v", err)
	}
	for _, h := range handles {
		mid := spantest.Attr(h, span.ID).AsString()
		p := ids[mid]
		if got := spantest.Attr(h, span.Outcome).AsString(); got != want[p] {
			t.Errorf("handle of %q: outcome %q, want %q", p, got, want[p])
		}
		if h.Status().Code == codes.Error {
			t.Errorf("handle of %q: status Error", p)
		}
		if spantest.Attr(h, span.Token).AsInt64() == 0 {
			t.Errorf("handle of %q: no token", p)
		}
		if !spantest.ChildOf(h, parent.SpanContext()) {
			t.Errorf("handle of %q: not a child of Consume's caller's span", p)
		}
		mu.Lock()
		if inHandler[mid].SpanID() != h.SpanContext().SpanID() {
			t.Errorf("handle of %q: the handler's ctx does not carry its span", p)
		}
		mu.Unlock()
	}
}
