package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/ratelimit"
	"github.com/coord-go/coord/session"
)

// A session lost mid-run, on the real clock (its lease revoked by an
// operator while its process waits for events and holds permits ahead):
// its callers fail with session.ErrExpired and are granted nothing after
// the loss; the permits it held come back (the epochs ahead hold nothing
// but what the other process reserves); its reservation key is gone;
// and every window of the interval, across the loss, holds at most limit
// + burst.
func TestSessionLossGivesPermitsBack(t *testing.T) {
	t.Parallel()
	p := root(t)
	limit, burst := ratelimit.Per(40, time.Second), int64(4)
	m := metrics.New()
	a, b := newSession(t, p, session.WithMetrics(m)), newSession(t, p)
	la := ratelimit.New(a, "api", limit, burst, ratelimit.WithClockSkew(0))
	lb := ratelimit.New(b, "api", limit, burst, ratelimit.WithClockSkew(0))
	ctx := ctxT(t, 30*time.Second)

	var mu sync.Mutex
	var grants []grant
	var lostAt time.Time
	var afterLoss int
	wait := func(id int, l *ratelimit.Limiter, ctx context.Context) error {
		for {
			if err := l.Wait(ctx); err != nil {
				return err
			}
			now := time.Now()
			mu.Lock()
			grants = append(grants, grant{at: now, proc: id})
			if id == 0 && !lostAt.IsZero() && now.After(lostAt.Add(50*time.Millisecond)) {
				afterLoss++ // granted well after the loss was reported
			}
			mu.Unlock()
		}
	}
	errA := make(chan error, 2)
	for range 2 {
		go func() { errA <- wait(0, la, ctx) }()
	}
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	doneB := make(chan error, 1)
	go func() { doneB <- wait(1, lb, bctx) }()

	// Let both hold permits, then revoke a's lease under it.
	eventually(t, 10*time.Second, "a holds permits ahead", func() bool {
		st, err := lb.State(ctx)
		return err == nil && ratelimit.Holdings(la) > 0 && len(st.Processes) == 2
	})
	if _, err := srv.Client().Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-errA:
			if !errors.Is(err, session.ErrExpired) {
				t.Errorf("a's Wait after its lease was revoked: %v, want session.ErrExpired", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a's callers still wait 10s after its lease was revoked")
		}
	}
	mu.Lock()
	lostAt = time.Now()
	mu.Unlock()
	if err := la.Wait(ctx); !errors.Is(err, session.ErrExpired) {
		t.Errorf("Wait on a lost session: %v, want session.ErrExpired", err)
	}
	// a gave back what it held, in one last Txn, and its key went with
	// its lease.
	eventually(t, 10*time.Second, "a's permits back and its reservation key gone", func() bool {
		st, err := lb.State(ctx)
		return err == nil && len(st.Processes) == 1 && st.Processes[0].Lease == b.Lease() &&
			gatherValue(t, m, "coord_ratelimit_txns_total", map[string]string{"op": "return", "result": "ok"}) >= 1 &&
			gatherValue(t, m, "coord_ratelimit_permits_total", map[string]string{"event": "returned"}) >= 1
	})
	eventually(t, 10*time.Second, "b granted a second's worth after the loss", func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, g := range grants {
			if g.at.After(lostAt) {
				n++
			}
		}
		return n >= int(limit.Events)
	})
	stopB()
	<-doneB
	mu.Lock()
	defer mu.Unlock()
	if afterLoss > 0 {
		t.Errorf("a was granted %d events after its loss was reported", afterLoss)
	}
	most, _ := checkCap(t, grants, []capEra{{from: time.Unix(0, 0), cap: limit.Events + burst}}, limit.Interval)
	t.Logf("%d granted across the loss, fullest window %d of cap %d", len(grants), most, limit.Events+burst)
}
