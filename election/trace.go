package election

import (
	"context"
	"errors"
	"time"

	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// startCampaign starts the span of one Campaign (when the session
// traces): "coord.election.campaign", from the call until the candidate
// leads or the call fails.
func (e *Election) startCampaign(ctx context.Context, prio int) (context.Context, *span.Span) {
	t := e.s.Tracer()
	if t == nil {
		return ctx, nil
	}
	return span.Start(ctx, t, "coord.election.campaign", trace.WithAttributes(
		append(e.spanAttrs(), attribute.Int("coord.priority", prio))...))
}

// endCampaign ends the campaign span with the call's outcome and, once
// elected, starts the leadership's span ("coord.election.lead"), a child
// of the caller's span linked to the campaign, ended with the term:
// released by Resign or a Transfer, lost (status Error) when the
// leadership is taken away, closed by the session's Close.
func (e *Election) endCampaign(ctx, wctx context.Context, sp *span.Span, t *term, err error) {
	if sp == nil {
		return
	}
	if err == nil {
		sp.Set(span.Token.Int64(t.token))
		opts := []trace.SpanStartOption{trace.WithAttributes(append(e.spanAttrs(), span.Token.Int64(t.token))...)}
		if l := trace.SpanContextFromContext(wctx); l.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: l}))
		}
		_, lead := span.Start(ctx, e.s.Tracer(), "coord.election.lead", opts...)
		t.mu.Lock()
		ended, lost := t.ended, t.lost
		if !ended {
			t.span = lead
		}
		t.mu.Unlock()
		if ended {
			endLead(lead, lost)
		}
	}
	sp.Wait(ctx, err, span.Elected, nil)
}

// endLead ends a leadership's span (nil: not traced) by why it ended.
func endLead(sp *span.Span, lost error) {
	sp.EndHold(lost, errors.Is(lost, session.ErrClosed), time.Time{})
}

func (e *Election) spanAttrs() []attribute.KeyValue {
	return []attribute.KeyValue{span.Kind.String(kind), span.Name.String(e.name), span.Lease.String(e.s.LeaseHex())}
}
