package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
)

const kind = keys.KindRateLimit

// errPresence is the lifecycle's Lost sentinel for a process's
// reservation key. Losing it costs nothing but the count of processes
// (the permits are counted in the shared state), so it is never returned.
var errPresence = errors.New("ratelimit: reservation key lost")

// errNotHeld is the lifecycle's NotHeld sentinel, never returned either.
var errNotHeld = errors.New("ratelimit: reservation key not held")

// errDenied ends an Allow that found no permit for now.
var errDenied = errors.New("ratelimit: no permit now")

// Limiter is a rate limiter named name, shared by every process that uses
// the same name under the same root prefix: in no window of the
// interval do all of them together get more than limit + burst events.
// Make one per name per process and share it: every Limiter counts as
// one process for the fair share. It is safe for concurrent use.
type Limiter struct {
	s       *lease.Session
	hub     *watch.Hub
	sp      keys.Space
	name    string
	label   string
	ctor    config
	clock   Clock
	horizon time.Duration
	err     error // a bad argument to New, returned by every method
	hcfg    hold.Config
	track   func(int) // see park.go; nil but in simulations

	mu sync.Mutex
	// dead is set when the session ends: every call fails with it.
	dead error
	// st is the shared state as last known (nil before the first read,
	// or while the key is absent), stMod its key's mod revision (0 when
	// absent), seen the mirror's revision.
	st     *state
	stMod  int64
	seen   int64
	loaded bool
	mErr   error // the mirror ended for good
	others int   // reservation keys the mirror shows, ours included
	rank   int   // ours among them, by creation (others when we have none)
	// turnAt is when a Txn that can wait (reserving ahead, an upgrade)
	// may go: see turn.
	turnAt int64
	// active: the limiter follows the shared state (a mirror, a session
	// watch, the idle timer), which it does while it holds or wants
	// permits, and only then.
	active   bool
	mirror   *watch.Mirror
	unlisten func()
	endWatch chan struct{}
	idleStop func() bool
	// pres is the process's reservation key, held on the session's lease
	// while it holds permits; presMod is its last mod revision.
	pres    *hold.Hold
	presMod int64
	// releasing: a release's answer was lost; until it is resolved the
	// only Txn sent is that release again.
	releasing bool
	// stock is the permits reserved and not yet given to a caller, in
	// time order; waiters the callers waiting for permits, first come
	// first; resv the permits given to Reservations not yet due.
	stock   []lot
	waiters []*waiter
	given   map[*waiter]lot
	// sleepers are the waiters asleep until their permits' epoch, which
	// an upgrade wakes early (see decide).
	sleepers map[*waiter]*spot
	resv     []lot
	// returning is permits taken out of the stock to be given back to the
	// shared state, kept until a Txn does.
	returning []take
	// run: the reservation loop runs; wake is its spot while it waits.
	run  bool
	wake *spot
	// demand estimates the process's rate, for reserving ahead;
	// lastDemand is when a caller last asked.
	demand     ewma
	lastDemand int64
	low        int64 // reserve ahead when the stock falls below it
	// want is how many permits per epoch the process tries to hold ahead
	// beyond what its measured rate says: doubled on a miss (a caller
	// found nothing usable now in the stock), halved when permits lapse
	// unused.
	want     float64
	rtt      int64 // round trip of a Txn, on the clock, smoothed
	backoffN int   // failed Txns in a row
	// stale: a Txn failed on a state it did not read; wait for the
	// mirror to bring one newer than staleMod.
	stale    bool
	staleMod int64
}

// New returns the limiter name on session s, allowing limit.Events per
// limit.Interval plus burst. Nothing is written until the first call that
// needs permits; bad arguments are reported by every method (wrapping
// ErrInvalid), never by a panic.
func New(s *session.Session, name string, limit Limit, burst int64, opts ...Option) *Limiter {
	o := options{clock: systemClock{}, skew: DefaultSkew}
	for _, opt := range opts {
		opt(&o)
	}
	l := &Limiter{name: name, label: fmt.Sprintf("ratelimit %.64q", name), clock: o.clock, horizon: o.horizon,
		given: map[*waiter]lot{}, sleepers: map[*waiter]*spot{},
		ctor: config{Limit: limit.Events, Interval: int64(limit.Interval), Burst: burst, Skew: int64(o.skew)}}
	switch {
	case o.err != nil:
		l.err = o.err
	case s == nil:
		l.err = fmt.Errorf("%w: nil session", ErrInvalid)
	default:
		l.err = l.ctor.check()
	}
	if s != nil {
		l.s = lease.Of(s)
		sp, err := keys.New(l.s.Root(), kind, name)
		if err != nil && l.err == nil {
			l.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		l.sp = sp
		l.hub = watch.For(l.s.Client())
		l.hcfg = hold.Config{Kind: kind, Names: []string{name}, Label: l.label, Noun: "reservation",
			Errors: hold.Errors{Lost: errPresence, NotHeld: errNotHeld}}
	}
	if l.err != nil {
		l.err = l.wrap(l.err)
	}
	return l
}

// Name returns the limiter's name.
func (l *Limiter) Name() string { return l.name }

func (l *Limiter) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", l.label, err)
}

func (l *Limiter) stateKey() string { return l.sp.Single("state") }

// now is the clock's time in unix ns.
func (l *Limiter) now() int64 { return l.clock.Now().UnixNano() }

// usable reports why a request for n cannot be made now, before any RPC.
func (l *Limiter) usable(ctx context.Context, n int64) error {
	if l.err != nil {
		return l.err
	}
	if n < 1 {
		return l.wrap(fmt.Errorf("%w: request for %d events, want at least 1", ErrInvalid, n))
	}
	l.mu.Lock()
	dead, burst := l.dead, l.ctor.Burst
	if l.st != nil && (l.st.Set || l.st.config == l.ctor) {
		burst = l.st.Burst
	}
	l.mu.Unlock()
	switch {
	case dead != nil:
		return dead
	case l.s.Err() != nil:
		return l.wrap(l.s.Err())
	case n > burst:
		return l.wrap(fmt.Errorf("%w: request for %d events, burst is %d", ErrTooLarge, n, burst))
	}
	return l.wrap(ctx.Err())
}

// current is the state to plan on: the one known, or a first user's.
func (l *Limiter) current(now int64) (*state, error) {
	if l.st == nil {
		return fresh(l.ctor, now)
	}
	if !l.st.Set && l.st.config != l.ctor {
		return nil, fmt.Errorf("%w: stored limit is %v, this limiter was made with %v", ErrLimitMismatch, l.st.config, l.ctor)
	}
	return l.st.clone(), nil
}

// horizonEpochs is how many epochs of g a process's share is counted
// over: the horizon (one interval unless set), between 2 and 64.
func (l *Limiter) horizonEpochs(c config, g *grid) int64 {
	h := l.horizon
	if h == 0 {
		h = time.Duration(c.Interval)
	}
	return min(max((int64(h)+g.Epoch-1)/g.Epoch, 2), 64)
}
