package lock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/span/spantest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// A Lock is a wait span and a hold span, both children of the caller's
// span, the hold linked to its wait, with the name, the holder's token
// and the outcomes; the hold ends when Unlock lets go.
func TestTraceLockAndUnlock(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	s := newSession(t, session.WithTracerProvider(rec.TP))
	name := fresh(t)
	ctx, parent := rec.TP.Tracer("test").Start(ctxT(t, 20*time.Second), "caller")
	m := lock.NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	wait := rec.Wait(t, 5*time.Second, "coord.lock.wait", 1)[0]
	if got := rec.Named("coord.lock.hold"); len(got) != 0 {
		t.Fatalf("the hold span ended while the lock is held: %v", got)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	parent.End()
	hold := rec.Wait(t, 5*time.Second, "coord.lock.hold", 1)[0]
	pc := parent.SpanContext()
	for _, sp := range []struct {
		s       spanOf
		outcome string
	}{{wait, span.Granted}, {hold, span.Released}} {
		s := sp.s
		if !spantest.ChildOf(s, pc) {
			t.Errorf("%s: parent %v, want the caller's span %v", s.Name(), s.Parent().SpanID(), pc.SpanID())
		}
		if got := spantest.Attr(s, span.Name).AsString(); got != name {
			t.Errorf("%s: name %q, want %q", s.Name(), got, name)
		}
		if got := spantest.Attr(s, span.Kind).AsString(); got != "lock" {
			t.Errorf("%s: kind %q", s.Name(), got)
		}
		if got := spantest.Attr(s, span.Token).AsInt64(); got != token || token == 0 {
			t.Errorf("%s: token %d, want the holder's %d", s.Name(), got, token)
		}
		if got := spantest.Attr(s, span.Outcome).AsString(); got != sp.outcome {
			t.Errorf("%s: outcome %q, want %q", s.Name(), got, sp.outcome)
		}
		if s.Status().Code == codes.Error {
			t.Errorf("%s: status %v", s.Name(), s.Status())
		}
	}
	if !spantest.LinkedTo(hold, wait.SpanContext()) {
		t.Error("the hold span does not link to its wait span")
	}
	if hold.StartTime().Before(wait.EndTime().Add(-time.Millisecond)) {
		t.Errorf("the hold starts (%v) before its wait ended (%v)", hold.StartTime(), wait.EndTime())
	}
}

// A waiter whose ctx is cancelled ends its wait span "cancelled", not as
// an error; a TryLock that finds the lock taken ends it "busy"; and a
// hold lost with its session's lease (revoked) ends "lost", status
// Error, by the time Done has fired.
func TestTraceCancelledWaitBusyAndLoss(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	holder := newSession(t, session.WithTracerProvider(rec.TP))
	waiter := newSession(t, session.WithTracerProvider(rec.TP))
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	m := lock.NewMutex(holder, name)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()

	wctx, cancel := context.WithCancel(ctx)
	w := lock.NewMutex(waiter, name)
	done := async(func() error { return w.Lock(wctx) })
	eventually(t, 5*time.Second, "the waiter's key is in line", func() bool { return countKeys(t, holder, "lock", name, "w") == 2 })
	cancel()
	if err := within(t, done, 5*time.Second, "the cancelled Lock returns"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock: %v", err)
	}
	if err := lock.NewMutex(waiter, name).TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryLock on a held lock: %v", err)
	}
	waits := rec.Wait(t, 5*time.Second, "coord.lock.wait", 3)
	outcomes := map[string]spanOf{}
	for _, s := range waits {
		outcomes[spantest.Attr(s, span.Outcome).AsString()] = s
	}
	for _, o := range []string{span.Granted, span.Cancelled, span.Busy} {
		s, ok := outcomes[o]
		if !ok {
			t.Fatalf("no wait span ended %q: %v", o, outcomes)
		}
		if s.Status().Code == codes.Error {
			t.Errorf("wait %q: status %v, want no error", o, s.Status())
		}
	}

	if _, err := srv.Client().Revoke(ctx, holder.Lease()); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, m.Done(), 5*time.Second, "Done after the lease's revocation")
	hold := rec.Wait(t, 5*time.Second, "coord.lock.hold", 1)[0]
	if got := spantest.Attr(hold, span.Outcome).AsString(); got != span.Lost {
		t.Fatalf("hold outcome %q, want %q", got, span.Lost)
	}
	if hold.Status().Code != codes.Error {
		t.Errorf("lost hold: status %v, want Error", hold.Status())
	}
	if got := spantest.Attr(hold, span.Token).AsInt64(); got != token {
		t.Errorf("lost hold: token %d, want %d", got, token)
	}
	if len(hold.Events()) == 0 {
		t.Error("the lost hold records no error event")
	}
}

// A session closed while it holds a lock ends the hold span "closed": the
// owner's doing, not a loss.
func TestTraceSessionCloseIsNotALoss(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	s := newSession(t, session.WithTracerProvider(rec.TP))
	m := lock.NewMutex(s, fresh(t))
	if err := m.Lock(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	hold := rec.Wait(t, 5*time.Second, "coord.lock.hold", 1)[0]
	if got := spantest.Attr(hold, span.Outcome).AsString(); got != span.Closed || hold.Status().Code == codes.Error {
		t.Fatalf("hold after Close: outcome %q, status %v", got, hold.Status())
	}
}

// Without a tracer provider the session's Tracer is a no-op one and
// nothing is recorded anywhere.
func TestNoTracerProvider(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	if _, sp := s.Tracer().Start(context.Background(), "x"); sp.IsRecording() || sp.SpanContext().IsValid() {
		t.Fatal("the default tracer records")
	}
	m := lock.NewMutex(s, fresh(t))
	ctx := ctxT(t, 10*time.Second)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		t.Fatal("a span was put in the caller's ctx")
	}
}

type spanOf = sdktrace.ReadOnlySpan

// An RWMutex's spans say the mode; a MultiMutex's name all its names.
func TestTraceRWMutexAndMulti(t *testing.T) {
	t.Parallel()
	rec := spantest.New(t)
	s := newSession(t, session.WithTracerProvider(rec.TP))
	ctx := ctxT(t, 20*time.Second)
	rw := lock.NewRWMutex(s, fresh(t))
	if err := rw.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	token := rw.Token()
	if err := rw.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"coord.rwlock.wait", "coord.rwlock.hold"} {
		sp := rec.Wait(t, 5*time.Second, name, 1)[0]
		if got := spantest.Attr(sp, span.Mode).AsString(); got != "read" {
			t.Errorf("%s: mode %q, want read", name, got)
		}
		if got := spantest.Attr(sp, span.Token).AsInt64(); got != token {
			t.Errorf("%s: token %d, want %d", name, got, token)
		}
	}
	a, b := fresh(t), fresh(t)
	mm := lock.NewMulti(s, a, b)
	if err := mm.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mm.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	hold := rec.Wait(t, 5*time.Second, "coord.lock.hold", 1)[0]
	if got := spantest.Attr(hold, span.Name).AsString(); got != a+","+b && got != b+","+a {
		t.Errorf("MultiMutex hold name %q, want both names", got)
	}
	if spantest.Attr(hold, span.Mode).Type() != attribute.EMPTY {
		t.Error("a Mutex's span has a mode")
	}
}
