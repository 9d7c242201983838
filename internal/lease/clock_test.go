package lease_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// jumpClock is the host's clock with its wall time stepped by a settable
// offset, as NTP or an operator steps it: the times it returns carry the
// wall time moved and the monotonic reading untouched, which is exactly
// what time.Now returns after a step. Code that compares on the
// monotonic reading does not notice; code that compares wall times (or
// strips the reading with Round(0), UTC, Unix...) sees hours go by.
type jumpClock struct{ offset atomic.Int64 }

func (c *jumpClock) Now() time.Time { return stepWall(time.Now(), time.Duration(c.offset.Load())) }

func (c *jumpClock) step(d time.Duration) { c.offset.Add(int64(d)) }

// stepWall returns t with its wall time moved by d (whole seconds) and its
// monotonic reading kept. No exported API does that (Add moves both), so
// it edits the seconds field of a Time that has a monotonic reading:
// since Go 1.9, wall holds a has-monotonic flag in bit 63, 33 bits of
// seconds since 1885 and 30 bits of nanoseconds. TestStepWall checks it
// against the time package's own answers.
func stepWall(t time.Time, d time.Duration) time.Time {
	type layout struct {
		wall uint64
		ext  int64
		loc  *time.Location
	}
	const hasMono, secShift = 1 << 63, 30
	l := (*layout)(unsafe.Pointer(&t))
	if l.wall&hasMono == 0 {
		panic("stepWall: time without a monotonic reading")
	}
	secs := int64(l.wall<<1>>(secShift+1)) + int64(d/time.Second)
	l.wall = hasMono | uint64(secs)<<secShift | l.wall&(1<<secShift-1)
	return t
}

func TestStepWall(t *testing.T) {
	now := time.Now()
	for _, d := range []time.Duration{3 * time.Hour, -5 * time.Hour, 0} {
		got := stepWall(now, d)
		if wall := got.Round(0).Sub(now.Round(0)); wall != d {
			t.Fatalf("stepWall(%s): the wall time moved %s", d, wall)
		}
		if mono := got.Sub(now); mono != 0 {
			t.Fatalf("stepWall(%s): the monotonic reading moved %s", d, mono)
		}
	}
}

// newJumpSession starts a session on clk over cli, closed at the end.
func newJumpSession(t *testing.T, cli *clientv3.Client, clk *jumpClock, ttl time.Duration) *lease.Session {
	t.Helper()
	s, err := lease.New(etcdtest.Context(t, 10*time.Second), cli, lease.WithClock(lease.Config{TTL: ttl, Root: "lease-test/"}, clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// holdKey takes a hold of key on s and returns it granted.
func holdKey(t *testing.T, s *lease.Session, key string) *hold.Hold {
	t.Helper()
	errLost, errNotHeld := errors.New("test: lost"), errors.New("test: not held")
	cfg := &hold.Config{Kind: "test", Names: []string{"t"}, Label: `test "t"`, Errors: hold.Errors{Lost: errLost, NotHeld: errNotHeld}}
	h := hold.New(s, cfg, keys.Record{}, hold.Key{Key: key, Watch: watch.RangeOf{Hub: watch.For(s.Client()), Key: key, End: keys.RangeEnd(key)}})
	if c, err := h.Create(etcdtest.Context(t, 10*time.Second), hold.Spec{}); err != nil || c.Failed() {
		t.Fatalf("create: %+v, %v", c, err)
	}
	if err := h.Grant(); err != nil {
		t.Fatal(err)
	}
	return h
}

// renewedTwice waits until s has had two renewals acknowledged after now
// (on the monotonic clock), or fails the test if the session ends first.
func renewedTwice(t *testing.T, s *lease.Session) {
	t.Helper()
	from := s.Renewed()
	deadline := time.Now().Add(4 * s.TTL())
	n := 0
	for n < 2 {
		select {
		case <-s.Done():
			t.Fatalf("session lost: %v", s.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if r := s.Renewed(); r.Sub(from) > 0 {
			n, from = n+1, r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no two renewals in %s", 4*s.TTL())
		}
	}
}

// TestWallClockStepsAreNoLoss: the wall clock stepped hours forward and
// back under a live session ends neither the session nor its holds, and
// its deadline stays within a TTL of now.
func TestWallClockStepsAreNoLoss(t *testing.T) {
	t.Parallel()
	clk := &jumpClock{}
	s := newJumpSession(t, srv.Client(), clk, 3*time.Second)
	h := holdKey(t, s, "lease-test/steps/"+s.NextID())
	for _, step := range []time.Duration{6 * time.Hour, -30 * time.Hour, 24 * time.Hour} {
		clk.step(step)
		renewedTwice(t, s)
		select {
		case <-h.Done():
			t.Fatalf("after a %s step: hold lost: %v", step, h.Lost())
		default:
		}
		if left := time.Until(s.Deadline()); left <= 0 || left > s.TTL() {
			t.Fatalf("after a %s step: the deadline is %s away, want within the TTL %s", step, left, s.TTL())
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
}

// TestWallClockStepBackIsNoLateLoss: with the wall clock stepped hours
// back when the session's renewals stop, the session still ends by its
// deadline (within the TTL of the last renewal), not hours later; and
// a lease revoked on the server with the wall clock stepped forward ends
// the session at once, not early and not late.
func TestWallClockStepBackIsNoLateLoss(t *testing.T) {
	t.Parallel()
	px := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli := etcdtest.NewTestClient(t, px.Endpoints())
	clk := &jumpClock{}
	s := newJumpSession(t, cli, clk, 3*time.Second)
	h := holdKey(t, s, "lease-test/late/"+s.NextID())
	renewedTwice(t, s)

	px.Blackhole()
	cut := time.Now()
	clk.step(-10 * time.Hour)
	select {
	case <-s.Done():
	case <-time.After(3 * s.TTL()):
		t.Fatalf("session not lost %s after its renewals stopped with the wall clock stepped back", 3*s.TTL())
	}
	if took := time.Since(cut); took > s.TTL()+time.Second {
		t.Fatalf("loss seen %s after the renewals stopped, want within the TTL %s", took, s.TTL())
	}
	if !errors.Is(s.Err(), lease.ErrExpired) {
		t.Fatalf("session ended with %v, want ErrExpired", s.Err())
	}
	select {
	case <-h.Done():
	case <-time.After(s.TTL()):
		t.Fatal("the hold's Done did not close after its session was lost")
	}
	px.Restore()

	// A revoke on the server, with the wall clock stepped forward.
	clk2 := &jumpClock{}
	s2 := newJumpSession(t, srv.Client(), clk2, 3*time.Second)
	renewedTwice(t, s2)
	clk2.step(10 * time.Hour)
	revoked := time.Now()
	if _, err := srv.Client().Revoke(etcdtest.Context(t, 5*time.Second), s2.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s2.Done():
	case <-time.After(3 * s2.TTL()):
		t.Fatal("session not lost after its lease was revoked")
	}
	if took := time.Since(revoked); took > s2.TTL() {
		t.Fatalf("revoke seen after %s, want within the TTL %s", took, s2.TTL())
	}
}
