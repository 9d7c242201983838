package hold

import (
	"context"
	"errors"
	"time"

	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/span"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Trace makes the time the hold is held a span named name, when the
// session traces: a child of parent's span (the caller's, not the wait
// span: the hold outlives the call that waited for it), linked to the
// span in link (the wait), starting at the grant, with the primitive's
// kind, name, token and attrs. The lifecycle ends it with the hold:
// Released by the owner's release, Lost (status Error) on a loss, Closed
// when the owner's Session.Close took it, Abandoned when a granted hold
// was given up unreported. A hold that ended before Trace is called gets
// its span ended at once. Call it once, after the grant.
func (h *Hold) Trace(parent, link context.Context, name string, token int64, attrs ...attribute.KeyValue) {
	t := h.s.Tracer()
	if t == nil {
		return
	}
	h.mu.Lock()
	start := h.start
	h.mu.Unlock()
	base := []attribute.KeyValue{span.Kind.String(h.cfg.Kind), span.Name.String(h.cfg.spanName()),
		span.Token.Int64(token), span.Lease.String(h.s.LeaseHex())}
	opts := []trace.SpanStartOption{trace.WithAttributes(append(base, attrs...)...), trace.WithTimestamp(start)}
	if l := trace.SpanContextFromContext(link); l.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: l}))
	}
	_, sp := span.Start(parent, t, name, opts...)
	h.mu.Lock()
	switch h.st {
	case held, releasing:
		h.span = sp
		done := h.done
		h.mu.Unlock()
		// The session's end ends the span even when nobody watches the
		// hold (Watch starts with the first Done call, and costs a watch
		// where the primitive has none): a lock held until Session.Close
		// is a span that ends then. Nothing else about the hold changes.
		go func() {
			select {
			case <-h.s.Done():
				endLost(h.takeSpan(), h.s.Err(), time.Now())
			case <-done:
			}
		}()
		return
	}
	st, cause, at := h.st, h.cause, h.lostAt
	h.mu.Unlock()
	switch st {
	case lost:
		endLost(sp, cause, at)
	case released:
		sp.End(span.Released, nil, time.Time{})
	default:
		sp.End(span.Abandoned, nil, time.Time{})
	}
}

// takeSpan returns the hold's span, once: whoever takes it ends it.
func (h *Hold) takeSpan() *span.Span {
	h.mu.Lock()
	defer h.mu.Unlock()
	sp := h.span
	h.span = nil
	return sp
}

// endLost ends a hold span by a loss seen at at: a deliberate
// Session.Close is the owner's doing, not a loss.
func endLost(sp *span.Span, cause error, at time.Time) {
	if cause == nil {
		cause = errors.New("hold: lost")
	}
	sp.EndHold(cause, errors.Is(cause, lease.ErrClosed), at)
}

// spanName is the primitive's name as spans show it.
func (c *Config) spanName() string {
	switch len(c.Names) {
	case 0:
		return ""
	case 1:
		return c.Names[0]
	}
	n := c.Names[0]
	for _, x := range c.Names[1:] {
		n += "," + x
	}
	return n
}
