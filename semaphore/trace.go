package semaphore

import (
	"context"

	"github.com/coord-go/coord/internal/span"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// startWait starts the span of one Acquire or TryAcquire call (when the
// session traces): "coord.semaphore.wait", from the call until the
// permits are granted or the call fails.
func (s *Semaphore) startWait(ctx context.Context, n int64) (context.Context, *span.Span) {
	t := s.s.Tracer()
	if t == nil {
		return ctx, nil
	}
	return span.Start(ctx, t, "coord.semaphore.wait", trace.WithAttributes(
		span.Kind.String(kind), span.Name.String(s.name), span.Lease.String(s.s.LeaseHex()), span.Weight.Int64(n)))
}

// endWait ends the wait span with the call's outcome and, on a grant,
// starts the permit's hold span ("coord.semaphore.hold"), a child of the
// caller's span linked to the wait, which the lifecycle ends on release
// or loss.
func (s *Semaphore) endWait(ctx, wctx context.Context, sp *span.Span, n int64, p *Permit, err error) {
	if sp == nil {
		return
	}
	if err == nil {
		sp.Set(span.Token.Int64(p.Token()))
		p.h.Trace(ctx, wctx, "coord.semaphore.hold", p.Token(), []attribute.KeyValue{span.Weight.Int64(n)}...)
	}
	sp.Wait(ctx, err, span.Granted, ErrNoPermits)
}
