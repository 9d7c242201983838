// Package span is coord's use of OpenTelemetry traces, written once: the
// span names, the attribute keys and outcomes every primitive uses, and
// a span handle that costs nothing when tracing is off.
//
// Tracing is opt-in through session.WithTracerProvider; no global
// provider is ever read. A session without one has a nil tracer, and
// Start with a nil tracer returns a nil *Span, whose methods do nothing:
// a primitive pays one nil check per operation and allocates nothing.
//
// # Safety
//
// A *Span is ended at most once (later End calls do nothing) and is safe
// for concurrent use, so a hold's span may be ended by whichever of its
// release or its loss comes first.
package span

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of coord's tracer.
const Scope = "github.com/coord-go/coord"

// The attributes of coord's spans.
const (
	Kind    = attribute.Key("coord.kind")    // the primitive's kind: lock, rwlock, semaphore, election, queue
	Name    = attribute.Key("coord.name")    // its name (a MultiMutex's names joined by ",")
	Token   = attribute.Key("coord.token")   // the fencing token: the key's create revision
	Outcome = attribute.Key("coord.outcome") // how the span ended: one of the outcomes below
	Lease   = attribute.Key("coord.lease")   // the session's lease, in hex as keys show it
	Mode    = attribute.Key("coord.mode")    // an RWMutex's "read" or "write"
	Weight  = attribute.Key("coord.weight")  // a semaphore request's permits
	Count   = attribute.Key("coord.count")   // messages a claim asked for / got
	ID      = attribute.Key("coord.id")      // a queue message's id
	Attempt = attribute.Key("coord.attempt") // a queue message's attempt
)

// Outcomes, the values of the Outcome attribute.
const (
	Granted      = "granted"       // a wait ended holding
	Elected      = "elected"       // a campaign ended leading
	Claimed      = "claimed"       // a claim got messages
	Busy         = "busy"          // a Try call found it taken
	Cancelled    = "cancelled"     // the caller's ctx ended the wait
	Failed       = "error"         // a failure: the span's status is Error
	Released     = "released"      // the owner let go
	Lost         = "lost"          // taken away while held: status Error
	Closed       = "closed"        // ended by the owner's Session.Close
	Abandoned    = "abandoned"     // granted but given up before it was reported
	Acked        = "acked"         // a handled message was acked
	Nacked       = "nacked"        // ... nacked, to be delivered again
	DeadLettered = "dead_lettered" // ... moved to the dead-letter list
	Settled      = "settled"       // ... settled by the handler itself (Ack, Nack, Dead)
)

// Span is one of coord's spans, or nil when tracing is off.
type Span struct {
	once sync.Once
	s    trace.Span
}

// Start starts a span named name, a child of ctx's span, when t is not
// nil; it returns ctx with the span in it. With a nil t it returns ctx
// and a nil *Span.
func Start(ctx context.Context, t trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, *Span) {
	if t == nil {
		return ctx, nil
	}
	ctx, s := t.Start(ctx, name, opts...)
	return ctx, &Span{s: s}
}

// Set adds attributes.
func (sp *Span) Set(kv ...attribute.KeyValue) {
	if sp != nil {
		sp.s.SetAttributes(kv...)
	}
}

// Context returns the span's span context (the zero one for nil).
func (sp *Span) Context() trace.SpanContext {
	if sp == nil {
		return trace.SpanContext{}
	}
	return sp.s.SpanContext()
}

// End ends the span with outcome; err, when not nil, is recorded, and
// for the Failed and Lost outcomes it sets the status to Error. at, when
// not zero, is when it ended (a loss seen before its cause was known).
func (sp *Span) End(outcome string, err error, at time.Time) {
	if sp == nil {
		return
	}
	sp.once.Do(func() {
		sp.s.SetAttributes(Outcome.String(outcome))
		if err != nil {
			sp.s.RecordError(err)
		}
		if outcome == Failed || outcome == Lost {
			msg := outcome
			if err != nil {
				msg = err.Error()
			}
			sp.s.SetStatus(codes.Error, msg)
		}
		if at.IsZero() {
			sp.s.End()
		} else {
			sp.s.End(trace.WithTimestamp(at))
		}
	})
}

// Wait ends a wait span: Granted (or won, for a campaign) when err is
// nil, Busy when err is busy (a Try call's sentinel), Cancelled when ctx
// ended it, else Failed.
func (sp *Span) Wait(ctx context.Context, err error, won string, busy error) {
	if sp == nil {
		return
	}
	switch {
	case err == nil:
		sp.End(won, nil, time.Time{})
	case busy != nil && errors.Is(err, busy):
		sp.End(Busy, nil, time.Time{})
	case ctx.Err() != nil:
		sp.End(Cancelled, err, time.Time{})
	default:
		sp.End(Failed, err, time.Time{})
	}
}

// EndHold ends a hold span: Released when cause is nil, Closed when
// closed says the owner's Session.Close ended it (not a loss), else Lost
// with cause, at the moment the loss was seen (at; zero: now).
func (sp *Span) EndHold(cause error, closed bool, at time.Time) {
	switch {
	case cause == nil:
		sp.End(Released, nil, at)
	case closed:
		sp.End(Closed, nil, at)
	default:
		sp.End(Lost, cause, at)
	}
}
