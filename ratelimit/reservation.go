package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Reservation is n events granted for a moment the caller waits for
// itself: between Time and Deadline. It is what x/time/rate's Reservation
// is, with the difference a hard cap makes: a reservation is not good
// forever after Time, only until Deadline, the end of its epoch's usable
// part. It is safe for concurrent use.
type Reservation struct {
	l     *Limiter
	x     lot
	at    time.Time
	until time.Time

	mu   sync.Mutex
	done bool
}

// Reserve is ReserveN(ctx, 1).
func (l *Limiter) Reserve(ctx context.Context) (*Reservation, error) { return l.ReserveN(ctx, 1) }

// ReserveN reserves n events for the earliest moment the process can have
// them, and returns at once once it has them (it may make one Txn to
// reserve them, never waits for their epoch). The caller then waits
// Delay() and acts before Deadline(); the limiter counts the events as
// granted whether the caller acts or not, unless it calls Cancel before
// Time. Wait is simpler and safer: it decides the grant at the very moment
// it returns. Its errors are WaitN's.
func (l *Limiter) ReserveN(ctx context.Context, n int64) (*Reservation, error) {
	if err := l.usable(ctx, n); err != nil {
		return nil, err
	}
	t0 := l.clock.Now()
	w := &waiter{n: n}
	x, err := l.await(ctx, w, false)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.given, w)
	if l.dead != nil {
		return nil, l.dead
	}
	from, until := x.usable()
	at := max(from, t0.UnixNano())
	l.resv = append(l.resv, x)
	l.s.Metrics().RateLimitGranted(l.name, n, 0)
	l.maybeReserve()
	return &Reservation{l: l, x: x, at: time.Unix(0, at), until: time.Unix(0, until)}, nil
}

// Time is the first moment the reserved events may happen.
func (r *Reservation) Time() time.Time { return r.at }

// Deadline is when the reservation lapses: events after it are over the
// cap's count.
func (r *Reservation) Deadline() time.Time { return r.until }

// Delay is how long to wait, from now on the limiter's clock, until
// Time; 0 when it has come.
func (r *Reservation) Delay() time.Duration {
	return max(0, r.at.Sub(r.l.clock.Now()))
}

// N is the number of events reserved.
func (r *Reservation) N() int64 { return r.x.n }

// Cancel says the events will not happen: before Time, the permits go
// back to the process's other callers; from Time on it does nothing (the
// events may have happened).
func (r *Reservation) Cancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now >= r.at.UnixNano() || l.dead != nil {
		return
	}
	for i, x := range l.resv {
		if x == r.x {
			l.resv = append(l.resv[:i], l.resv[i+1:]...)
			break
		}
	}
	l.addStock(r.x)
	l.s.Metrics().RateLimitPermits(l.name, "cancelled", r.x.n)
	l.dispatch(now)
}
