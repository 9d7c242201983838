package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/lease"
)

// Bound's context ends with the caller's and with the session, whichever
// is first, and says which through its error.
func TestBoundEndsWithTheSession(t *testing.T) {
	ctx := etcdtest.Context(t, 30*time.Second)
	s, err := lease.New(ctx, srv.Client(), lease.Config{TTL: 5 * time.Second, Root: "lease-test/"})
	if err != nil {
		t.Fatal(err)
	}
	parent, cancelParent := context.WithCancel(ctx)
	first, stopFirst := s.Bound(parent)
	defer stopFirst()
	cancelParent()
	<-first.Done()
	if !errors.Is(first.Err(), context.Canceled) {
		t.Fatalf("after the caller's cancel: %v, want context.Canceled", first.Err())
	}
	second, stopSecond := s.Bound(ctx)
	defer stopSecond()
	select {
	case <-second.Done():
		t.Fatalf("ended while the session and its caller live: %v", second.Err())
	default:
	}
	s.Close()
	select {
	case <-second.Done():
	case <-time.After(time.Second):
		t.Fatal("not ended within 1 s of the session's Close")
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's context ended: the test proves nothing")
	}
	// Bound on an ended session is ended at once.
	late, stopLate := s.Bound(ctx)
	defer stopLate()
	select {
	case <-late.Done():
	case <-time.After(time.Second):
		t.Fatal("Bound on an ended session did not end")
	}
}
