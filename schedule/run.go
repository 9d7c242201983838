package schedule

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
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Run makes the caller a replica of the schedule until ctx or s ends: at
// every tick it races the other replicas to claim the tick, and the one
// that claims it runs fn(ctx, tick) on its own goroutine. fn's ctx is
// cancelled when the run's key is lost (s ended), when Run's ctx ends,
// and under OverlapCancel when a later run starts. fn's error is recorded
// in the history; it does not stop Run.
//
// Run returns ctx's error when ctx ends, an error wrapping
// session.ErrExpired or session.ErrClosed when s ends, and ErrInvalid for
// a nil session or fn or a session under another root prefix; it returns
// only after every run it started has returned and been recorded. A
// replica follows the schedule through the process's one watch of it:
// waiting for a tick costs no RPC, and claiming one is one Txn, made only
// by the replicas whose clock reaches the tick before they see it
// claimed.
func (s *Schedule) Run(ctx context.Context, sess *session.Session, fn func(ctx context.Context, t Tick) error) error {
	if s.err != nil {
		return s.err
	}
	if sess == nil {
		return fmt.Errorf("%s: %w: nil session", s.label, ErrInvalid)
	}
	if fn == nil {
		return fmt.Errorf("%s: %w: nil fn", s.label, ErrInvalid)
	}
	l := lease.Of(sess)
	if l.Root() != s.root {
		return fmt.Errorf("%s: %w: the schedule is under root %q and the session under %q: set the same root on both", s.label, ErrInvalid, s.root, l.Root())
	}
	if err := l.Err(); err != nil {
		return fmt.Errorf("%s: %w", s.label, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	name := s.o.replica
	if name == "" {
		name = l.Owner()
	}
	r := &replica{s: s, l: l, fn: fn, clock: s.o.clock, name: name, wake: make(chan struct{}, 1), jobs: map[string]*job{},
		records: map[string]entry{}}
	return r.run(ctx)
}

// replica is one Run: the decider loop and the runs it started.
type replica struct {
	s       *Schedule
	l       *lease.Session
	fn      func(context.Context, Tick) error
	clock   Clock
	name    string
	start   time.Time // when Run began: the schedule's start, if no replica ran it before
	mir     *watch.Mirror
	wake    chan struct{}
	seen    int64            // the state revision last checked for skew
	member  int64            // the create revision of this replica's member key
	records map[string]entry // history records decoded, by key (the decider's own)

	jobsCtx context.Context
	wg      sync.WaitGroup
	mu      sync.Mutex
	jobs    map[string]*job // own runs, by key
}

func (r *replica) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *replica) run(ctx context.Context) (err error) {
	s := r.s
	r.start = r.clock.Now()
	r.mir = s.hub.Mirror(s.sp.Base())
	defer r.mir.Release()
	defer r.mir.Listen(func(*watch.View, watch.Change) { r.signal() })()

	member := hold.New(r.l, &s.repCfg, keys.Record{Value: r.name},
		hold.Key{Key: s.sp.Key(partMember, r.l.NextID()), Watch: watch.MirrorOf{Hub: s.hub, Base: s.sp.Base()}})
	if _, err := member.Create(ctx, hold.Spec{}); err != nil {
		member.Abandon(ctx)
		return r.exitErr(ctx, err)
	}
	if err := member.Grant(); err != nil {
		member.Abandon(ctx)
		return r.exitErr(ctx, err)
	}
	r.member = member.Rev()
	jctx, cancelJobs := context.WithCancel(ctx)
	r.jobsCtx = jctx
	defer func() {
		cancelJobs()
		r.drain()
		r.wg.Wait()
		cctx, cancel := cleanupCtx(ctx)
		member.Release(cctx)
		cancel()
	}()

	backoff := 10 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.l.Done():
			return fmt.Errorf("%s: %w", s.label, r.l.Err())
		default:
		}
		var v view
		loaded := false
		if err := r.mir.Locked(func(vw *watch.View, ok bool) {
			if loaded = ok; ok {
				v = s.snapshot(vw, r.member, r.records)
			}
		}); err != nil {
			return r.exitErr(ctx, err)
		}
		if !loaded {
			r.sleep(ctx, time.Time{})
			continue
		}
		r.observe(v)
		r.tend(v)
		at, acted, err := r.decide(ctx, v)
		switch {
		case err != nil:
			if ctx.Err() != nil || r.l.Err() != nil {
				continue // the loop's top says why
			}
			r.l.Logger().Warn("coord schedule: deciding a tick failed; retrying", "name", s.Name(), "error", err)
			realSleep(ctx, r.l.Done(), backoff)
			backoff = min(2*backoff, time.Second)
		case acted:
			backoff = 10 * time.Millisecond
		default:
			backoff = 10 * time.Millisecond
			r.sleep(ctx, at)
		}
	}
}

// exitErr explains why Run could not go on: ctx, the session, or err.
func (r *replica) exitErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if serr := r.l.Err(); serr != nil {
		return fmt.Errorf("%s: %w", r.s.label, serr)
	}
	return fmt.Errorf("%s: %w", r.s.label, err)
}

// maxNap is the longest a replica sleeps before it reads its clock
// again: a timer runs on the monotonic clock, so a wall clock stepped
// forward (NTP, an operator) while a replica sleeps toward a tick hours
// away would otherwise make that tick late by the whole step.
const maxNap = time.Minute

// sleep waits until the replica's clock reaches at (never, when at is
// zero), the mirror changes, or ctx or the session ends; or for at most
// the nap, after which the loop reads the clock and decides again (a
// wake before at costs no request).
func (r *replica) sleep(ctx context.Context, at time.Time) {
	var fire <-chan time.Time
	if !at.IsZero() {
		fire = r.clock.After(min(at.Sub(r.clock.Now()), r.s.o.nap))
	}
	select {
	case <-fire:
	case <-r.wake:
	case <-ctx.Done():
	case <-r.l.Done():
	}
}

// realSleep waits d of real time: a backoff after an etcd failure, which
// is about the network, not the schedule's clock.
func realSleep(ctx context.Context, done <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-done:
	}
}

// observe checks the clock assumption against every claim another
// replica makes: a claim for a tick is made once its claimer's clock has
// reached the tick, so a claim seen by this replica before its own clock
// reaches the tick by more than twice the tolerance means two clocks are
// further apart than the tolerance allows.
func (r *replica) observe(v view) {
	if !v.exists || v.stateRev <= r.seen {
		return
	}
	r.seen = v.stateRev
	if v.st.By == r.name || v.st.Due.IsZero() {
		return
	}
	if early := v.st.Due.Sub(r.clock.Now()); early > 2*r.s.o.skew {
		r.l.Metrics().ScheduleEarlyClaim(r.s.Name())
		r.l.Logger().Warn("coord schedule: a tick was claimed before this replica's clock reached it by more than twice the skew tolerance: clocks disagree",
			"name", r.s.Name(), "claimed_by", v.st.By, "due", v.st.Due, "early", early, "tolerance", r.s.o.skew)
	}
}

var errSync = errors.New("schedule: mirror did not catch up")

// syncWait is how long synced waits for the watch to bring a revision
// before it asks etcd for a progress notification.
const syncWait = 200 * time.Millisecond

// synced waits for the mirror to reach rev, so the next decision sees
// what a Txn of this replica did or found: the Txn's own write, or the
// change that made its compare fail. Both are in the mirror's range, so
// the watch brings them; only if it has not within syncWait (rev was not
// a change of the range after all) does it cost a progress request.
func (r *replica) synced(ctx context.Context, rev int64) error {
	rctx, cancel := context.WithTimeout(ctx, syncWait)
	err := r.mir.Read(rctx, rev, func(*watch.View) {})
	cancel()
	if err == nil || ctx.Err() != nil {
		return err
	}
	if err := r.mir.Sync(ctx, rev); err != nil {
		return fmt.Errorf("%w: %w", errSync, err)
	}
	return nil
}

// failedAt is the revision to sync to after a decision's compares failed:
// the state's mod revision as the failed Txn read it, when the state is
// what changed; else the Txn's own revision.
func failedAt(v view, kvs []*mvccpb.KeyValue, at int64) int64 {
	if len(kvs) == 1 && kvs[0].ModRevision != v.stateRev {
		return kvs[0].ModRevision
	}
	return at
}
