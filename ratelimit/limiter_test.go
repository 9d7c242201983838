package ratelimit_test

import (
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/ratelimit"
	"github.com/coord-go/coord/session"
)

func TestWaitGrants(t *testing.T) {
	t.Parallel()
	p := root(t)
	m := metrics.New()
	s := newSession(t, p, session.WithMetrics(m))
	l := ratelimit.New(s, "api", ratelimit.Per(100, time.Second), 10)
	ctx := ctxT(t, 20*time.Second)
	start := time.Now()
	for range 30 {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("30 events at 100/s took %v", d)
	}
	st, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("state: %+v", st)
	if st.Limit != ratelimit.Per(100, time.Second) || st.Burst != 10 || len(st.Processes) != 1 {
		t.Fatalf("state %+v", st)
	}
	// The metrics count every grant, and far fewer reservations and Txns.
	granted := gatherValue(t, m, "coord_ratelimit_granted_total", nil)
	resv := gatherValue(t, m, "coord_ratelimit_reservations_total", nil)
	txns := gatherValue(t, m, "coord_ratelimit_txns_total", nil)
	reserved := gatherValue(t, m, "coord_ratelimit_permits_total", map[string]string{"event": "reserved"})
	if granted != 30 || resv < 1 || txns < resv || resv > 15 || reserved < 30 {
		t.Fatalf("metrics: %v granted, %v reservations, %v Txns, %v permits reserved", granted, resv, txns, reserved)
	}
	t.Logf("30 granted: %v reservations, %v Txns, %v permits reserved", resv, txns, reserved)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	p := root(t)
	s := newSession(t, p)
	ctx := ctxT(t, 10*time.Second)
	for _, c := range []struct {
		name  string
		limit ratelimit.Limit
		burst int64
		opts  []ratelimit.Option
	}{
		{"zero-limit", ratelimit.Per(0, time.Second), 1, nil},
		{"negative-limit", ratelimit.Per(-5, time.Second), 1, nil},
		{"zero-interval", ratelimit.Per(5, 0), 1, nil},
		{"zero-burst", ratelimit.Per(5, time.Second), 0, nil},
		{"negative-burst", ratelimit.Per(5, time.Second), -1, nil},
		{"burst-over-limit", ratelimit.Per(5, time.Second), 6, nil},
		{"negative-skew", ratelimit.Per(5, time.Second), 1, []ratelimit.Option{ratelimit.WithClockSkew(-time.Millisecond)}},
		{"skew-over-interval", ratelimit.Per(5, time.Second), 1, []ratelimit.Option{ratelimit.WithClockSkew(time.Second)}},
		{"", ratelimit.Per(5, time.Second), 1, nil},
	} {
		l := ratelimit.New(s, c.name, c.limit, c.burst, c.opts...)
		if err := l.Wait(ctx); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("%s: Wait: %v, want ErrInvalid", c.name, err)
		}
		if ok, err := l.AllowN(ctx, 1); ok || !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("%s: AllowN: %v %v, want ErrInvalid", c.name, ok, err)
		}
	}
	if err := ratelimit.New(nil, "x", ratelimit.Per(5, time.Second), 1).Wait(ctx); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Errorf("nil session: %v", err)
	}
	l := ratelimit.New(s, "n", ratelimit.Per(5, time.Second), 2)
	for _, n := range []int64{0, -1} {
		if err := l.WaitN(ctx, n); !errors.Is(err, ratelimit.ErrInvalid) {
			t.Errorf("WaitN(%d): %v, want ErrInvalid", n, err)
		}
	}
	if err := l.WaitN(ctx, 3); !errors.Is(err, ratelimit.ErrTooLarge) {
		t.Errorf("WaitN(3) with burst 2: %v, want ErrTooLarge", err)
	}
	if _, err := l.ReserveN(ctx, 3); !errors.Is(err, ratelimit.ErrTooLarge) {
		t.Errorf("ReserveN(3) with burst 2: %v, want ErrTooLarge", err)
	}
	if n := keysUnder(t, p+"ratelimit/"); n != 0 {
		t.Errorf("bad input left %d keys", n)
	}
}
