package schedule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/hold"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errSuperseded is the cause of a run cancelled by OverlapCancel.
var errSuperseded = errors.New("schedule: cancelled: a later run started (OverlapCancel)")

// maxErrorText bounds the error text a history record keeps.
const maxErrorText = 1024

// job is one run this replica claimed: held, waiting for earlier runs to
// end (OverlapBuffer, OverlapCancel), then running fn, then recorded.
type job struct {
	h       *hold.Hold
	tick    Tick
	hkey    string
	rec     Run
	ctx     context.Context
	cancel  context.CancelCauseFunc
	started bool // under the replica's mu
}

// add registers a claimed run; tend starts it when the overlap policy
// lets it.
func (r *replica) add(h *hold.Hold, t Tick, hkey string, rec Run) {
	ctx, cancel := context.WithCancelCause(r.jobsCtx)
	j := &job{h: h, tick: t, hkey: hkey, rec: rec, ctx: ctx, cancel: cancel}
	go func() {
		select {
		case <-h.Done(): // lost, or released after fn returned
			if err := h.Lost(); err != nil {
				cancel(err)
			}
		case <-ctx.Done():
		}
	}()
	r.mu.Lock()
	r.jobs[rec.Key] = j
	r.mu.Unlock()
	r.wg.Add(1)
	if r.s.o.overlap == OverlapSkip || r.s.o.overlap == OverlapAllow {
		r.mu.Lock()
		j.started = true
		r.mu.Unlock()
		go r.work(j, true)
	}
	r.signal()
}

// tend starts the runs that waited for earlier ones to end, and under
// OverlapCancel cancels this replica's runs that a later run supersedes.
func (r *replica) tend(v view) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.jobs {
		older, newer := false, false
		for _, l := range v.runs {
			older = older || l.rev < j.tick.Token
			newer = newer || l.rev > j.tick.Token
		}
		if r.s.o.overlap == OverlapCancel && newer {
			j.cancel(errSuperseded)
		}
		if !j.started && (!older || j.ctx.Err() != nil) {
			j.started = true
			go r.work(j, j.ctx.Err() == nil)
		}
	}
}

// work runs fn (unless call is false: the run was cancelled while it
// waited) and records how it ended.
func (r *replica) work(j *job, call bool) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.jobs, j.rec.Key)
		r.mu.Unlock()
		j.cancel(nil)
		r.signal()
	}()
	name := r.s.Name()
	m := r.l.Metrics()
	start := r.clock.Now()
	var err error
	if call && j.ctx.Err() == nil {
		m.ScheduleLateness(name, start.Sub(j.tick.Time))
		err = r.fn(j.ctx, j.tick)
	} else {
		err = context.Cause(j.ctx)
		call = false
	}
	end := r.clock.Now()
	final := j.rec
	final.Start, final.End, final.Token, final.Key = start, end, j.tick.Token, ""
	switch {
	case err == nil:
		final.Outcome = Succeeded
	case !call || j.ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		final.Outcome = Cancelled
		if cause := context.Cause(j.ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
	default:
		final.Outcome = Failed
	}
	if err != nil {
		final.Error = err.Error()
		if len(final.Error) > maxErrorText {
			final.Error = final.Error[:maxErrorText] + "..."
		}
	}
	// Record the outcome in the Txn that lets the run's key go: a run key
	// that goes without its record is a crash to everyone else.
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := cleanupCtx(context.Background())
		_, rerr := j.h.Release(ctx, clientv3.OpPut(j.hkey, final.encode()))
		cancel()
		switch {
		case rerr == nil:
			m.ScheduleRun(name, string(final.Outcome), end.Sub(start))
			return
		case errors.Is(rerr, errRunLost), errors.Is(rerr, errRunEnded), r.l.Err() != nil:
			// Lost: the others record it as crashed, and re-run it if told to.
			r.l.Logger().Warn("coord schedule: a run ended after its key was lost; its outcome is not recorded",
				"name", name, "seq", j.tick.Seq, "token", j.tick.Token, "outcome", final.Outcome, "error", rerr)
			return
		}
		realSleep(context.Background(), r.l.Done(), backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// drain starts the runs still waiting when Run ends, so that each is
// recorded as cancelled (their context is cancelled by now).
func (r *replica) drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, j := range r.jobs {
		if !j.started {
			j.started = true
			go r.work(j, false)
		}
	}
}
