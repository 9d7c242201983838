package ratelimit

import (
	"context"
	"errors"
	"time"
)

// Wait is WaitN(ctx, 1).
func (l *Limiter) Wait(ctx context.Context) error { return l.WaitN(ctx, 1) }

// WaitN blocks until n events may happen now, ctx ends, or the session
// ends. When it returns nil, the n events are granted at that instant,
// and every grant of every process counts against the cap; act on them
// at once (an event that happens long after its grant is not what the
// cap counted).
//
// The process's callers are served first come first from the permits it
// holds; it reserves more in one Txn for all of them, and ahead of its
// demand, so that a busy process seldom waits for etcd and makes one Txn
// per many events. A waiter's permits may belong to an epoch ahead: it
// sleeps until that epoch starts, with no RPC. It returns an error
// wrapping ErrInvalid for n < 1, ErrTooLarge for n above the burst,
// ErrLimitMismatch when the stored limit differs from New's, the
// session's error (session.ErrClosed, session.ErrExpired) once it ended,
// or ctx's error; the permits it held for the caller go to the process's
// other callers.
func (l *Limiter) WaitN(ctx context.Context, n int64) error {
	if err := l.usable(ctx, n); err != nil {
		return err
	}
	t0 := l.clock.Now()
	w := &waiter{n: n}
	front := false
	for {
		x, err := l.await(ctx, w, front)
		if err != nil {
			return err
		}
		from, _ := x.usable()
		if l.now() < from {
			if err := l.sleepUntil(ctx, w, from); err != nil {
				l.putBack(w, x)
				return l.wrap(err)
			}
		}
		ok, err := l.grant(w, x, t0)
		if ok || err != nil {
			return err
		}
		front = true // lapsed while this goroutine was not running: first in line again
	}
}

// await queues w and blocks until it is given permits, refused, or ctx
// ends.
func (l *Limiter) await(ctx context.Context, w *waiter, front bool) (lot, error) {
	l.mu.Lock()
	if l.dead != nil {
		l.mu.Unlock()
		return lot{}, l.dead
	}
	now := l.now()
	w.lot, w.err, w.sp = nil, nil, l.newSpot()
	if !front {
		l.demand.add(now, w.n)
		l.lastDemand = now
	}
	if front {
		l.waiters = append([]*waiter{w}, l.waiters...)
	} else {
		l.waiters = append(l.waiters, w)
	}
	l.dispatch(now)
	if w.lot == nil && l.loaded && l.st != nil {
		// A miss: the process held nothing usable for this caller. Hold
		// more ahead from now on (a caller that waits in a loop never
		// shows its demand in the measured rate).
		l.want = min(2*l.want+float64(w.n), float64(l.st.last().params().maxBudget()))
	}
	if w.lot == nil && w.now && !l.roomNow(now, w.n) {
		// The shared state, as the mirror shows it, has no room now:
		// refuse without a round trip.
		l.removeWaiter(w)
		l.maybeReserve()
		l.mu.Unlock()
		return lot{}, errDenied
	}
	if w.lot == nil {
		l.kick()
	}
	sp := w.sp
	l.s.Metrics().RateLimitWaiting(l.name, 1)
	l.mu.Unlock()
	stop := context.AfterFunc(ctx, sp.wake)
	sp.park()
	stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s.Metrics().RateLimitWaiting(l.name, -1)
	switch {
	case w.lot != nil:
		return *w.lot, nil
	case w.err != nil:
		return lot{}, w.err
	}
	l.removeWaiter(w)
	return lot{}, l.wrap(ctx.Err())
}

// roomNow reports whether the state the mirror shows may have room for n
// in the epoch now falls in (true when it is not known). mu held.
func (l *Limiter) roomNow(now, n int64) bool {
	if !l.loaded || l.st == nil || (!l.st.Set && l.st.config != l.ctor) {
		return true
	}
	room := false
	l.st.each(now, 2*l.rtt, now+1, func(e epoch) bool {
		room = e.g.start(e.k) <= now && e.room() >= n
		return false
	})
	return room
}

// maybeReserve starts reserving ahead when the process's demand says so
// and its stock is low. mu held.
func (l *Limiter) maybeReserve() {
	if l.low > 0 {
		if total, _ := l.holdings(); total < l.low {
			l.kick()
		}
	}
}

func (l *Limiter) removeWaiter(w *waiter) {
	for i, x := range l.waiters {
		if x == w {
			l.waiters = append(l.waiters[:i], l.waiters[i+1:]...)
			return
		}
	}
	// Given permits at the very moment ctx ended: they go back.
	if x, ok := l.given[w]; ok {
		delete(l.given, w)
		l.addStock(x)
		l.dispatch(l.now())
	}
}

// sleepUntil waits for the clock to reach t, ctx to end, or an upgrade
// (permits for now instead of w's, see decide).
func (l *Limiter) sleepUntil(ctx context.Context, w *waiter, t int64) error {
	sp := l.newSpot()
	l.mu.Lock()
	l.sleepers[w] = sp
	l.mu.Unlock()
	stopT := l.clock.AfterFunc(time.Duration(t-l.now()), sp.wake)
	stopC := context.AfterFunc(ctx, sp.wake)
	sp.park()
	stopT()
	stopC()
	l.mu.Lock()
	delete(l.sleepers, w)
	l.mu.Unlock()
	if l.now() < t {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// putBack returns a waiter's permits to the stock, for the others.
func (l *Limiter) putBack(w *waiter, x lot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.given, w)
	if l.dead == nil {
		l.addStock(x)
		l.dispatch(l.now())
	}
}

// grant grants x to w if now is inside its epoch's usable part: the one
// moment the cap is decided at. false with no error: it lapsed.
func (l *Limiter) grant(w *waiter, x lot, asked time.Time) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.given, w)
	if l.dead != nil {
		return false, l.dead
	}
	now := l.now()
	from, until := x.usable()
	m := l.s.Metrics()
	switch {
	case now < from:
		// A clock that went back: keep the permits for later.
		l.addStock(x)
		return false, nil
	case now >= until:
		m.RateLimitPermits(l.name, "lapsed", x.n)
		return false, nil
	}
	m.RateLimitGranted(l.name, x.n, time.Duration(now-asked.UnixNano()))
	l.maybeReserve()
	return true, nil
}

// Allow is AllowN(ctx, 1), false on any error.
func (l *Limiter) Allow(ctx context.Context) bool {
	ok, _ := l.AllowN(ctx, 1)
	return ok
}

// AllowN reports whether n events may happen now, and grants them if so;
// it never waits for a later epoch. From the permits the process holds it
// answers at once; when it holds none for now, it reserves them in one
// Txn if the epoch now falls in has room (which the process's mirror of
// the limiter tells without a read), and answers false without an RPC
// when it has none. Its errors are WaitN's; false with a nil error means
// only "not now".
func (l *Limiter) AllowN(ctx context.Context, n int64) (bool, error) {
	if err := l.usable(ctx, n); err != nil {
		return false, err
	}
	t0 := l.clock.Now()
	w := &waiter{n: n, now: true}
	x, err := l.await(ctx, w, false)
	if errors.Is(err, errDenied) {
		l.s.Metrics().RateLimitDenied(l.name)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ok, err := l.grant(w, x, t0); !ok {
		if err == nil {
			l.s.Metrics().RateLimitDenied(l.name)
		}
		return false, err
	}
	return true, nil
}
