package hold

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/span/spantest"
	"go.opentelemetry.io/otel/codes"
)

// The lifecycle ends a traced hold's span by how the hold ended: its
// owner's release, a loss (its key deleted by someone else), or a loss
// that came before Trace was called.
func TestTraceEndsWithTheHold(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 20*time.Second)
	rec := spantest.New(t)
	s, err := lease.New(ctx, srv.Client(), lease.Config{TTL: 10 * time.Second, Root: "hold-test/", Logger: slog.New(slog.DiscardHandler), Tracer: rec.TP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	grant := func(name string) *Hold {
		t.Helper()
		h := newHold(s, "hold-test/trace/"+name+"/"+s.NextID())
		if _, err := h.Create(ctx, Spec{}); err != nil {
			t.Fatal(err)
		}
		if err := h.Grant(); err != nil {
			t.Fatal(err)
		}
		return h
	}
	outcome := func(name string) (string, codes.Code, int64) {
		t.Helper()
		sp := rec.Wait(t, 5*time.Second, name, 1)[0]
		return spantest.Attr(sp, span.Outcome).AsString(), sp.Status().Code, spantest.Attr(sp, span.Token).AsInt64()
	}

	h := grant("released")
	h.Trace(context.Background(), context.Background(), "released", h.Rev())
	if _, err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if o, c, tok := outcome("released"); o != span.Released || c == codes.Error || tok != h.Rev() {
		t.Fatalf("released hold: %q %v token %d, want %q, token %d", o, c, tok, span.Released, h.Rev())
	}

	h = grant("lost")
	h.Trace(context.Background(), context.Background(), "lost", h.Rev())
	h.Done() // starts watching the key
	if _, err := srv.Client().Delete(ctx, h.Key()); err != nil {
		t.Fatal(err)
	}
	<-h.Done()
	if o, c, _ := outcome("lost"); o != span.Lost || c != codes.Error {
		t.Fatalf("lost hold: %q %v, want %q, Error", o, c, span.Lost)
	}

	h = grant("late")
	h.Done()
	if _, err := srv.Client().Delete(ctx, h.Key()); err != nil {
		t.Fatal(err)
	}
	<-h.Done()
	h.Trace(context.Background(), context.Background(), "late", h.Rev())
	if o, _, _ := outcome("late"); o != span.Lost {
		t.Fatalf("hold traced after its loss: %q, want %q", o, span.Lost)
	}
}
