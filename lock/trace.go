package lock

import (
	"context"
	"strings"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/span"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// startWait starts the span of one Lock, RLock or TryLock call (when the
// session traces): "coord.<kind>.wait", from the call until the lock is
// granted or the call fails.
func (c *core) startWait(ctx context.Context, m mode) (context.Context, *span.Span) {
	t := c.s.Tracer()
	if t == nil {
		return ctx, nil
	}
	return span.Start(ctx, t, "coord."+c.kind+".wait", trace.WithAttributes(c.attrs(m)...))
}

// endWait ends the wait span with the call's outcome and, on a grant,
// starts the hold span ("coord.<kind>.hold"), a child of the caller's
// span linked to the wait, which the lifecycle ends on release or loss.
func (c *core) endWait(ctx, wctx context.Context, sp *span.Span, m mode, a *acq, err error) {
	if sp == nil {
		return
	}
	if err == nil {
		sp.Set(span.Token.Int64(a.h.Rev()))
		a.h.Trace(ctx, wctx, "coord."+c.kind+".hold", a.h.Rev(), c.attrs(m)[3:]...)
	}
	sp.Wait(ctx, err, span.Granted, ErrLocked)
}

// attrs are the attributes of the lock's spans; the mode, for an
// RWMutex, comes last.
func (c *core) attrs(m mode) []attribute.KeyValue {
	a := []attribute.KeyValue{span.Kind.String(c.kind), span.Name.String(strings.Join(c.names, ",")), span.Lease.String(c.s.LeaseHex())}
	switch m {
	case modeRead:
		a = append(a, span.Mode.String("read"))
	case modeWrite:
		if c.kind != keys.KindLock {
			a = append(a, span.Mode.String("write"))
		}
	}
	return a
}
