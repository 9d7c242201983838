// Package spantest records the spans coord's primitives end, for their
// tests: an SDK tracer provider with an in-memory span recorder, and the
// lookups the tests share.
//
// # Safety
//
// A Recorder is safe for concurrent use; its provider is shut down when
// the test ends.
package spantest

import (
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Recorder is a tracer provider whose ended spans are kept in memory.
type Recorder struct {
	*tracetest.SpanRecorder
	TP *sdktrace.TracerProvider
}

// New returns a Recorder, shut down at the end of t.
func New(t testing.TB) *Recorder {
	r := &Recorder{SpanRecorder: tracetest.NewSpanRecorder()}
	r.TP = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.SpanRecorder))
	t.Cleanup(func() { r.TP.Shutdown(t.Context()) })
	return r
}

// Named returns the ended spans called name, in the order they ended.
func (r *Recorder) Named(name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range r.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// Wait waits up to d for n ended spans called name and returns them.
func (r *Recorder) Wait(t testing.TB, d time.Duration, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ss := r.Named(name)
		if len(ss) >= n {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %d ended %q spans (have %d)", d, n, name, len(ss))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Attr returns the span's attribute key (an invalid Value when absent).
func Attr(s sdktrace.ReadOnlySpan, key attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// ChildOf reports whether s is a child of the span parent.
func ChildOf(s sdktrace.ReadOnlySpan, parent trace.SpanContext) bool {
	return s.Parent().SpanID() == parent.SpanID() && s.Parent().TraceID() == parent.TraceID()
}

// LinkedTo reports whether s links to the span to.
func LinkedTo(s sdktrace.ReadOnlySpan, to trace.SpanContext) bool {
	for _, l := range s.Links() {
		if l.SpanContext.SpanID() == to.SpanID() {
			return true
		}
	}
	return false
}
