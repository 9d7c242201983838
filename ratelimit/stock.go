package ratelimit

import "math"

// lot is n permits of one epoch, held by this process.
type lot struct {
	p params
	k int64
	n int64
}

func (x lot) usable() (from, until int64) { return x.p.usable(x.k) }

func (x lot) key() [2]int64 { return [2]int64{x.p.T0, x.k} }

// waiter is one caller waiting for permits.
type waiter struct {
	n   int64
	now bool // Allow: only permits usable now
	// lot is what it was given; err why it ended without.
	lot *lot
	err error
	sp  *spot
}

// dispatch drops lapsed permits and gives the stock to the waiters, first
// come first, each the earliest permits that fit it. mu held.
func (l *Limiter) dispatch(now int64) {
	l.dropLapsed(now)
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		x, ok := l.takeStock(w.n, now, true)
		if !ok && !w.now && !l.roomNow(now, w.n) {
			// Nothing for now here, and the epoch now falls in has no room
			// either: the earliest permits the process holds. (With room
			// now, the loop reserves some of it instead of making the
			// caller sleep into a later epoch.)
			x, ok = l.takeStock(w.n, now, false)
		}
		if ok {
			w.lot = &x
			l.given[w] = x
			w.sp.wake()
			continue
		}
		kept = append(kept, w)
	}
	clear(l.waiters[len(kept):])
	l.waiters = kept
}

// takeStock takes n permits of one epoch from the stock: the earliest that
// are still usable (now, for an Allow).
func (l *Limiter) takeStock(n, now int64, nowOnly bool) (lot, bool) {
	for i := range l.stock {
		x := &l.stock[i]
		from, until := x.usable()
		if until <= now || x.n < n {
			continue
		}
		if nowOnly && from > now {
			break
		}
		got := lot{p: x.p, k: x.k, n: n}
		x.n -= n
		if x.n == 0 {
			l.stock = append(l.stock[:i], l.stock[i+1:]...)
		}
		return got, true
	}
	return lot{}, false
}

// addStock puts permits into the stock, in time order.
func (l *Limiter) addStock(x lot) {
	if x.n <= 0 {
		return
	}
	from, _ := x.usable()
	for i := range l.stock {
		if l.stock[i].key() == x.key() {
			l.stock[i].n += x.n
			return
		}
		if f, _ := l.stock[i].usable(); f > from {
			l.stock = append(l.stock[:i], append([]lot{x}, l.stock[i:]...)...)
			return
		}
	}
	l.stock = append(l.stock, x)
}

// dropLapsed forgets the permits whose epoch can no longer be granted in.
func (l *Limiter) dropLapsed(now int64) {
	kept := l.stock[:0]
	for _, x := range l.stock {
		if _, until := x.usable(); until <= now {
			l.s.Metrics().RateLimitPermits(l.name, "lapsed", x.n)
			l.want /= 2 // held more than the callers used
			continue
		}
		kept = append(kept, x)
	}
	l.stock = kept
	resv := l.resv[:0]
	for _, x := range l.resv {
		if _, until := x.usable(); until > now {
			resv = append(resv, x)
		}
	}
	l.resv = resv
}

// holdings is every permit of this process not yet granted or lapsed: its
// stock, what its waiters were given, its Reservations not yet due; and
// per epoch.
func (l *Limiter) holdings() (total int64, per map[[2]int64]int64) {
	per = map[[2]int64]int64{}
	for _, x := range l.stock {
		total += x.n
		per[x.key()] += x.n
	}
	for _, x := range l.resv {
		total += x.n
		per[x.key()] += x.n
	}
	for _, x := range l.given {
		total += x.n
		per[x.key()] += x.n
	}
	return total, per
}

// ewma is a rate (events per ns) smoothed over tau ns.
type ewma struct {
	v   float64
	at  int64
	tau float64
}

func (e *ewma) decay(now int64) {
	if e.tau <= 0 {
		e.tau = float64(1e9)
	}
	if now > e.at {
		e.v *= math.Exp(-float64(now-e.at) / e.tau)
		e.at = now
	}
}

func (e *ewma) add(now, n int64) {
	e.decay(now)
	e.v += float64(n) / e.tau
}

func (e *ewma) rate(now int64) float64 {
	e.decay(now)
	return e.v
}
