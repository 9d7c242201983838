package ratelimit

import (
	"math"
	"time"

	"github.com/coord-go/coord/internal/watch"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The reservation loop is the one goroutine of a Limiter that talks to
// etcd: it runs while callers wait for permits the stock cannot give,
// while the process's demand says to reserve ahead, and while permits are
// to be given back; it ends when there is nothing to do, so an idle
// limiter has no goroutine, no timer and no watch.

// kick makes the loop look again: wakes it where it waits, or starts it.
// mu held.
func (l *Limiter) kick() {
	if l.wake != nil {
		l.wake.wake()
		l.wake = nil
	}
	if !l.run {
		l.run = true
		if l.track != nil {
			l.track(1)
		}
		go l.loop()
	}
}

// job is what one turn of the loop does in one Txn.
type job struct {
	st      *state // the state planned on (trimmed), at mod revision mod
	mod     int64
	takes   []take
	ret     []take
	release bool // let the reservation key go (idle)
}

func (j job) empty() bool { return len(j.takes) == 0 && len(j.ret) == 0 && !j.release }

func (l *Limiter) loop() {
	defer func() {
		if l.track != nil {
			l.track(-1)
		}
	}()
	for {
		l.mu.Lock()
		now := l.now()
		l.dispatch(now)
		switch {
		case l.dead != nil:
			// The loop keeps running (run stays set) until the farewell is
			// done, so that no second loop can send the same returns.
			j := l.farewell(now)
			for try := 0; !j.empty() && l.st != nil && try < maxRetries; try++ {
				st, err := l.current(l.now())
				if err != nil {
					break
				}
				st.trim(l.now())
				j.st, j.mod = st, l.stMod
				l.mu.Unlock()
				ok := l.commit(j, true)
				l.mu.Lock()
				if !ok {
					break
				}
				// A conflict read the state anew (or the mirror will
				// bring it): return what is left on it.
				j = job{ret: l.returning}
			}
			l.returning = nil
			l.run = false
			l.mu.Unlock()
			l.deactivate()
			return
		case l.mErr != nil:
			l.failWaiters(l.wrap(l.mErr))
			l.mErr = nil
			l.run = false
			l.mu.Unlock()
			l.deactivate()
			return
		case !l.active:
			if !l.wanted() {
				l.run = false
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			l.activate()
			continue
		case !l.loaded || (l.stale && l.stMod == l.staleMod):
			l.park(0)
			continue
		}
		l.stale = false
		st, err := l.current(now)
		if err != nil {
			l.failWaiters(l.wrap(err))
			l.run = false
			l.mu.Unlock()
			return
		}
		st.trim(now)
		l.failTooLarge(st)
		j, waiting := l.decide(now, st)
		if at := l.turn(now, st, j); at > now {
			// Only work that can wait, and not this process's turn yet.
			l.park(at)
			continue
		}
		if j.empty() {
			if waiting {
				// Callers wait for permits no epoch has room for now:
				// wait for the state to change (a return, a limit
				// change, another process gone) or for the next epoch,
				// which brings room within reach.
				l.park(l.nextEpoch(now, st))
				continue
			}
			idle := l.idleNow()
			l.run = false
			l.mu.Unlock()
			if idle {
				l.deactivate()
			}
			return
		}
		j.st, j.mod = st, l.stMod
		l.mu.Unlock()
		if !l.commit(j, false) {
			// A failure that is not a conflict: do not spin on it.
			l.mu.Lock()
			l.park(l.now() + int64(l.backoff()))
		}
	}
}

// park waits, mu held (and released), until kicked, the state changes,
// or the clock reaches at (0: no timer).
func (l *Limiter) park(at int64) {
	sp := l.newSpot()
	l.wake = sp
	var stop func() bool
	if at > 0 {
		stop = l.clock.AfterFunc(time.Duration(at-l.now()), sp.wake)
	}
	l.mu.Unlock()
	sp.park()
	if stop != nil {
		stop()
	}
}

// nextEpoch is when the next epoch of the grid in force starts.
func (l *Limiter) nextEpoch(now int64, st *state) int64 {
	for i := range st.Grids {
		g := &st.Grids[i]
		if k := g.index(now); k < 0 {
			return g.start(0)
		} else if g.End == 0 || g.start(k+1) < g.End {
			return g.start(k + 1)
		}
	}
	return now + st.last().Epoch
}

// wanted reports whether the loop has anything to do at all. mu held.
func (l *Limiter) wanted() bool {
	return len(l.waiters) > 0 || len(l.stock) > 0 || len(l.returning) > 0 || l.pres != nil
}

// idleNow reports whether the limiter holds nothing and waits for
// nothing, so it can stop following the shared state. mu held.
func (l *Limiter) idleNow() bool {
	return len(l.waiters) == 0 && len(l.stock) == 0 && len(l.given) == 0 && len(l.returning) == 0 && l.pres == nil
}

// failWaiters ends every waiting caller with err. mu held.
func (l *Limiter) failWaiters(err error) {
	for _, w := range l.waiters {
		w.err = err
		w.sp.wake()
	}
	clear(l.waiters)
	l.waiters = l.waiters[:0]
}

// failTooLarge ends the waiters whose request the burst in force no longer
// allows (SetBurst lowered it). mu held.
func (l *Limiter) failTooLarge(st *state) {
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if w.n > st.Burst {
			w.err = l.wrap(errTooLarge(w.n, st.Burst))
			w.sp.wake()
			continue
		}
		kept = append(kept, w)
	}
	clear(l.waiters[len(kept):])
	l.waiters = kept
}

// decide plans one Txn: the permits to reserve for the waiting callers
// and the demand, and those to give back. waiting reports callers that
// wait for permits (Allow's excepted, which are refused instead). mu
// held.
//
// The share: a process may hold at most quota permits not yet granted,
// the horizon's permits over the processes reserving. So however much
// the others want, a process that comes late finds its share of the
// horizon free as soon as what the others hold beyond theirs is spent:
// its first wait is at most about a horizon, the ones after it no longer
// than anyone else's.
func (l *Limiter) decide(now int64, st *state) (j job, waiting bool) {
	if l.releasing {
		return job{ret: l.returning, release: true}, len(l.waiters) > 0
	}
	g := st.last()
	h := l.horizonEpochs(st.config, g)
	if l.demand.tau == 0 {
		l.demand.tau = float64(h*g.Epoch) / 2
	}
	if len(l.waiters) == 0 && len(l.given) == 0 && now-l.lastDemand >= l.idleAfter() {
		// No demand for a while: give everything back, plan nothing.
		j.ret, j.release = l.giveBack(now, 0, 0, 2*l.rtt)
		l.low = 0
		return j, false
	}
	procs := int64(max(1, l.others))
	if l.pres == nil {
		procs = int64(l.others) + 1
	}
	quota := max(1, h*g.PerPeriod/(g.Period*procs))
	held, per := l.holdings()
	perEpoch := max(l.demand.rate(now)*float64(g.Epoch)*1.25, l.want)
	var spread int64
	if perEpoch*float64(h) >= 2 {
		spread = int64(math.Ceil(perEpoch))
	}
	a := ask{now: now, margin: 2 * l.rtt, until: now + 2*h*g.Epoch, held: func(t0, k int64) int64 { return per[[2]int64{t0, k}] }}
	for _, w := range l.waiters {
		a.reqs = append(a.reqs, req{n: w.n, now: w.now})
	}
	// The upgrade: callers asleep until a later epoch while the epoch now
	// falls in has room (a process gave permits back, or nobody reserved
	// that far). Taking that room and waking them early is what keeps
	// permits given back from lapsing unused; theirs go back to the
	// stock.
	upgrades := l.upgrades(now)
	for _, n := range upgrades {
		a.reqs = append(a.reqs, req{n: n, now: true})
	}
	l.low = 0
	if spread > 0 {
		l.low = max(1, quota/3)
	}
	switch {
	case len(a.reqs) > 0:
		a.quota = max(quota-held, a.reqs[0].n)
		for _, n := range upgrades {
			a.quota += n
		}
		a.spread = spread
	case spread > 0 && held < l.low:
		// Reserve ahead before the stock runs out, so a busy process
		// seldom waits for a round trip; a third of its share left is
		// when, so that each reservation takes two thirds of one.
		a.quota = quota - held
		a.spread = spread
	}
	if a.quota > 0 {
		var placed []bool
		j.takes, placed = st.place(a)
		for i, w := range l.waiters {
			if w.now && !placed[i] {
				w.err = errDenied
				w.sp.wake()
			} else if !placed[i] {
				waiting = true
			}
		}
		l.dropDone()
	}
	j.ret, j.release = l.giveBack(now, quota, spread*h, a.margin)
	return j, waiting
}

// dropDone removes the waiters decide refused. mu held.
func (l *Limiter) dropDone() {
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if w.err == nil {
			kept = append(kept, w)
		}
	}
	clear(l.waiters[len(kept):])
	l.waiters = kept
}

// giveBack chooses the permits to return to the shared state: all the
// stock once the process has had no demand for idleAfter (and then the
// reservation key goes too), or what it holds beyond its share and its
// demand when that is at least half a share. The permits leave the stock
// here, before any Txn, so none of them can be granted once a Txn may
// have given them back. mu held.
func (l *Limiter) giveBack(now, quota, want, margin int64) (ret []take, release bool) {
	idle := len(l.waiters) == 0 && len(l.given) == 0 && now-l.lastDemand >= l.idleAfter()
	if idle || len(l.waiters) == 0 {
		keep := max(quota, want)
		if idle {
			keep = 0
		}
		var held int64
		for _, x := range l.stock {
			held += x.n
		}
		excess := held - keep
		if idle || excess >= max(1, quota/2) {
			// From the latest epochs back: the earliest are the likeliest
			// to be used.
			for i := len(l.stock) - 1; i >= 0 && excess > 0; i-- {
				x := &l.stock[i]
				n := min(x.n, excess)
				if _, until := x.usable(); until > now+margin {
					l.returning = append(l.returning, take{T0: x.p.T0, K: x.k, N: n})
				}
				x.n -= n
				excess -= n
			}
			kept := l.stock[:0]
			for _, x := range l.stock {
				if x.n > 0 {
					kept = append(kept, x)
				}
			}
			l.stock = kept
		}
	}
	release = idle && l.pres != nil && len(l.stock) == 0
	return l.returning, release
}

// idleAfter is how long a process without demand keeps its stock: an
// epoch, or a tenth of the horizon when that is longer. Short, because
// what a process holds in the epochs just ahead lapses if it waits: the
// others can use it only if it is given back before its epoch.
func (l *Limiter) idleAfter() int64 {
	if l.st == nil {
		return 0
	}
	g := l.st.last()
	return max(g.Epoch/2, l.horizonEpochs(l.st.config, g)*g.Epoch/20)
}

// farewell is the last Txn after the session ended: every permit not
// granted goes back (no caller can be granted one any more: a grant
// checks dead under mu), except those of Reservations, which belong to
// their callers now. mu held.
func (l *Limiter) farewell(now int64) job {
	l.failWaiters(l.dead)
	for w, x := range l.given {
		l.stock = append(l.stock, x)
		delete(l.given, w)
	}
	for _, x := range l.stock {
		if _, until := x.usable(); until > now {
			l.returning = append(l.returning, take{T0: x.p.T0, K: x.k, N: x.n})
		}
	}
	l.stock = nil
	l.pres = nil // gone with the lease
	return job{ret: l.returning}
}

// activate starts following the shared state: the process's mirror of
// the limiter (one watch, one read), and the session's end. mu not held.
func (l *Limiter) activate() {
	m := l.hub.Mirror(l.sp.Base())
	end := make(chan struct{})
	l.mu.Lock()
	if l.active {
		l.mu.Unlock()
		m.Release()
		return
	}
	l.active, l.mirror, l.endWatch, l.loaded = true, m, end, false
	l.mu.Unlock()
	cancel := m.Listen(l.changed)
	l.mu.Lock()
	l.unlisten = cancel
	l.armIdle()
	l.mu.Unlock()
	go func() {
		select {
		case <-l.s.Done():
			l.mu.Lock()
			if l.dead == nil {
				l.dead = l.wrap(l.s.Err())
			}
			l.kick()
			l.mu.Unlock()
		case <-end:
		}
	}()
}

// deactivate stops following the shared state, if the limiter is idle
// (or dead). mu not held.
func (l *Limiter) deactivate() {
	l.mu.Lock()
	if !l.active || (l.dead == nil && !l.idleNow()) || l.run {
		l.mu.Unlock()
		return
	}
	m, un, end, stop := l.mirror, l.unlisten, l.endWatch, l.idleStop
	l.active, l.mirror, l.unlisten, l.endWatch, l.idleStop, l.loaded = false, nil, nil, nil, nil, false
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
	close(end)
	if un != nil {
		un()
	}
	m.Release()
}

// changed is the mirror's listener: it keeps the newest state and the
// number of processes, and wakes the loop. Called with the mirror locked;
// nothing holding mu ever calls into the mirror.
func (l *Limiter) changed(v *watch.View, c watch.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Err != nil {
		l.mErr = c.Err
		l.kick()
		return
	}
	if e := v.Get(l.stateKey()); e != nil {
		if e.ModRev > l.stMod {
			if st, err := decodeState(e.Value); err == nil {
				l.st, l.stMod = st, e.ModRev
			} else {
				l.mErr = err
			}
		}
	} else if (c.Reloaded && v.Rev() > l.stMod) || (l.stMod > 0 && l.deleted(c)) {
		// The state key is gone (deleted by hand): start over as a first
		// user would. Its reservations are forgotten, so the cap holds
		// only from the next interval on; see the package doc.
		l.st, l.stMod = nil, 0
	}
	line := v.Line("r")
	l.others, l.rank = line.Len(), line.Len()
	if l.pres != nil {
		i := 0
		line.Each(func(e *watch.Entry) bool {
			if e.Key == l.pres.Key() {
				l.rank = i
				return false
			}
			i++
			return true
		})
	}
	l.loaded = true
	if l.wake != nil {
		l.wake.wake()
		l.wake = nil
	} else if !l.run && len(l.sleepers) > 0 && len(l.upgrades(l.now())) > 0 {
		l.kick()
	}
	l.seen = v.Rev()
}

func (l *Limiter) deleted(c watch.Change) bool {
	for _, ev := range c.Events {
		if string(ev.Kv.Key) == l.stateKey() && ev.Type == mvccpb.DELETE {
			return true
		}
	}
	return false
}

// armIdle schedules the next look at whether demand fell. mu held.
func (l *Limiter) armIdle() {
	if l.idleStop != nil {
		l.idleStop()
	}
	d := l.idleAfter()
	if d <= 0 {
		d = int64(10 * time.Millisecond)
	}
	if l.st != nil {
		// Just after an epoch's start, when the callers of every process
		// wake anyway: one moment of activity per epoch rather than
		// several. Just after, so that callers whose permits were of that
		// epoch have been granted by then (a caller given permits is
		// demand): what a process that stopped asking holds of the epoch
		// goes back while the others can still use it, not an epoch later.
		now := l.now()
		d = l.nextEpoch(now+d-1, l.st) - now + l.st.last().Epoch/20
	}
	l.idleStop = l.clock.AfterFunc(time.Duration(d), func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !l.active {
			return
		}
		l.armIdle()
		if len(l.stock) > 0 || l.pres != nil || len(l.returning) > 0 || len(l.sleepers) > 0 {
			l.kick()
		}
	})
}

// upgrades lists the sizes of the sleepers whose permits are in a later
// epoch than now's while now's has room for them, as the mirror shows it.
// mu held.
func (l *Limiter) upgrades(now int64) []int64 {
	var out []int64
	for w := range l.sleepers {
		x, ok := l.given[w]
		if !ok {
			continue
		}
		if from, _ := x.usable(); from > now && l.roomNow(now, x.n) {
			out = append(out, x.n)
		}
	}
	return out
}

// wakeSleepers wakes sleepers whose permits are in a later epoch while the
// stock has permits for now: each gives its own back and takes those. mu
// held.
func (l *Limiter) wakeSleepers(now int64) {
	var avail int64
	for _, x := range l.stock {
		if from, until := x.usable(); from <= now && now < until {
			avail += x.n
		}
	}
	for w, sp := range l.sleepers {
		if avail <= 0 {
			return
		}
		if x, ok := l.given[w]; ok {
			if from, _ := x.usable(); from > now && x.n <= avail {
				avail -= x.n
				sp.wake()
			}
		}
	}
}

// turn staggers the Txns that can wait: reserving ahead, upgrades and
// returns, that is every Txn but one a waiting caller needs. The
// processes of a limiter run in step, every caller of every process
// waking at the same epoch starts, and without a turn they would all
// reserve at the same moment, all but one failing their compare. Each
// process waits its slot, (rank + epoch) mod processes, of epoch/2 cut
// in as many, from when it first had such work; the rotation by epoch
// keeps it fair. It returns when the job may go (≤ now: at once). mu held.
func (l *Limiter) turn(now int64, st *state, j job) int64 {
	if j.empty() || len(l.waiters) > 0 || l.dead != nil {
		l.turnAt = 0
		return 0
	}
	if l.turnAt == 0 {
		g := st.last()
		n := int64(max(1, l.others))
		slot := (int64(l.rank) + max(0, g.index(now))) % n
		l.turnAt = now + slot*(g.Epoch/(2*n))
	}
	if now >= l.turnAt {
		at := l.turnAt
		l.turnAt = 0
		return at - 1
	}
	return l.turnAt
}
