package schedule

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// decide does the one thing the view calls for, in this order: record
// (or re-run) a crashed run, start a triggered run, decide the next due
// tick. It returns acted when it sent a Txn (the view is then stale), or
// else the time, by the replica's clock, at which the next tick is due.
func (r *replica) decide(ctx context.Context, v view) (at time.Time, acted bool, err error) {
	s := r.s
	if v.bad != nil {
		return time.Time{}, false, v.bad
	}
	for _, e := range v.hist {
		if e.run.Outcome == Running && !v.running(e.run.Key, e.mod) {
			return time.Time{}, true, r.crashed(ctx, v, e)
		}
	}
	now := r.clock.Now()
	ns := v.st
	ns.Spec, ns.By, ns.At, ns.Due = s.spec.String(), r.name, now, time.Time{}
	if v.exists && v.st.Trigger != nil {
		ns.Trigger = nil
		return time.Time{}, true, r.claim(ctx, v, ns, v.st.Trigger.At, true, 0)
	}

	last := v.st.Last
	if !v.exists || last.IsZero() {
		last = r.start // a new schedule: its ticks start now
	}
	next := s.spec.Next(last)
	if next.IsZero() {
		return time.Time{}, false, nil // the spec never ticks again
	}
	if due := next.Add(s.jitter(next) + r.stagger(v, next)); now.Before(due) {
		return due, false, nil
	}
	// Ticks in (last, now] are due: normally just next. Those older than
	// the cutoff are missed, and the catch-up policy decides about them;
	// the younger ones are not, whatever the policy: a live replica whose
	// clock lags by up to the skew tolerance may be about to run them, so
	// they run, oldest first.
	n, latest := s.spec.count(last, now)
	if n > 1 && now.Before(latest.Add(s.jitter(latest))) {
		n, latest = s.spec.count(last, latest.Add(-time.Nanosecond)) // its jitter is not over yet
	}
	if v.st.Paused != nil {
		ns.Last = latest
		return time.Time{}, true, r.skip(ctx, v, ns.skip(SkipPaused, n), nil, map[string]int64{SkipPaused: n})
	}
	cutoff := now.Add(-2 * s.o.skew)
	if s.o.catchup == CatchupSkip {
		cutoff = now.Add(-max(2*s.o.skew, s.o.grace))
	}
	old, latestOld := int64(0), time.Time{}
	if cutoff.After(last) {
		if latest.Before(cutoff) {
			cutoff = latest
		}
		old, latestOld = s.spec.count(last, cutoff)
	}
	recent := time.Time{} // the oldest due tick that is not missed
	if n > old {
		recent = next
		if old > 0 {
			recent = s.spec.Next(latestOld)
		}
	}
	run, missed := recent, old
	switch {
	case old == 0:
	case s.o.catchup == CatchupLatest && recent.IsZero() && now.Sub(latestOld) <= s.o.window:
		run, missed = latestOld, old-1
	case s.o.catchup == CatchupAll:
		if o := s.spec.oldest(last, now.Add(-s.o.window), latestOld); !o.IsZero() {
			run = o
			missed, _ = s.spec.count(last, o.Add(-time.Nanosecond))
		}
	}
	if run.IsZero() {
		ns.Last = latest
		return time.Time{}, true, r.skip(ctx, v, ns.skip(SkipMissed, missed), nil, map[string]int64{SkipMissed: missed})
	}
	if s.o.catchup == CatchupAll && !run.Equal(recent) && len(v.runs) > 0 && s.o.overlap != OverlapAllow {
		// Missed ticks are caught up one after the other: the next waits
		// for the run before it to end (the mirror says when), rather
		// than being skipped or cancelling it.
		return time.Time{}, false, nil
	}
	ns.Last, ns.Due = run, run.Add(s.jitter(run))
	return time.Time{}, true, r.claim(ctx, v, ns.skip(SkipMissed, missed), run, false, missed)
}

// staggerStep is how much later each replica claims a tick than the one
// that joined before it: long enough for an fsynced claim and its watch
// event, so normally only the first replica sends a claim and the others
// see the tick taken before their turn. A tick then costs one claim and
// one release whatever the number of replicas. If the first replica is
// gone, its member key goes with it and the next one moves up.
const staggerStep = 25 * time.Millisecond

// stagger is this replica's delay for tick t: its rank times the step,
// at most a quarter of the time to the following tick.
func (r *replica) stagger(v view, t time.Time) time.Duration {
	if v.rank == 0 {
		return 0
	}
	d := time.Duration(v.rank) * staggerStep
	if after := r.s.spec.Next(t); !after.IsZero() {
		d = min(d, after.Sub(t)/4)
	}
	return d
}

// stateCmp is the compare every decision carries: the state is as the
// view saw it, so no two replicas decide the same tick.
func (r *replica) stateCmp(v view) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(r.s.stateKey), "=", v.stateRev)
}

// claim starts a run of tick t (a trigger's when trig), or skips it when
// the overlap policy says so. ns is the state to write; missed counts the
// older ticks it skips besides.
func (r *replica) claim(ctx context.Context, v view, ns state, t time.Time, trig bool, missed int64) error {
	s := r.s
	skipped := map[string]int64{SkipMissed: missed}
	overlap := func() error {
		cmps := make([]clientv3.Cmp, 0, len(v.runs))
		for _, l := range v.runs {
			// Still going: a run that ended since the view lets the tick run.
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev))
		}
		skipped[SkipOverlap]++
		return r.skip(ctx, v, ns.skip(SkipOverlap, 1), cmps, skipped)
	}
	switch {
	case s.o.overlap == OverlapSkip && len(v.runs) > 0:
		return overlap()
	case s.o.overlap == OverlapBuffer && len(v.runs) > 1:
		return overlap() // one runs and one waits already
	}
	seq := v.st.Seq + 1
	ns.Seq = seq
	rec := Run{Seq: seq, Tick: t, Attempt: 1, Trigger: trig, Replica: r.name, Start: r.clock.Now(), Outcome: Running,
		Key: s.sp.Key(partRun, seqID(seq)+"."+r.l.NextID())}
	return r.begin(ctx, v, ns, rec, []clientv3.Cmp{r.stateCmp(v)}, 1, skipped)
}

// skip decides ticks without running them: one Txn that moves the state
// on, under the view's compares.
func (r *replica) skip(ctx context.Context, v view, ns state, cmps []clientv3.Cmp, skipped map[string]int64) error {
	cmps = append(cmps, r.stateCmp(v))
	resp, err := r.s.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(r.s.stateKey, ns.encode())).
		Else(clientv3.OpGet(r.s.stateKey, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return err // the outcome is unknown; the next decision reads it from the mirror
	}
	if !resp.Succeeded {
		return r.synced(ctx, failedAt(v, resp.Responses[0].GetResponseRange().Kvs, resp.Header.Revision))
	}
	r.countSkipped(skipped)
	return r.synced(ctx, resp.Header.Revision)
}

func (r *replica) countSkipped(skipped map[string]int64) {
	m := r.l.Metrics()
	for reason, n := range skipped {
		if n > 0 {
			m.ScheduleSkipped(r.s.Name(), reason, n)
		}
	}
}

// begin claims a run in one Txn through the lifecycle: the run's key on
// this replica's session, created only if cmps hold, with the new state
// and the run's history record; adding is how many records it adds.
func (r *replica) begin(ctx context.Context, v view, ns state, rec Run, cmps []clientv3.Cmp, adding int, skipped map[string]int64) error {
	s := r.s
	hkey := s.sp.Key(partHistory, seqID(rec.Seq))
	meta := map[string]string{"seq": strconv.FormatInt(rec.Seq, 10), "tick": rec.Tick.UTC().Format(time.RFC3339Nano),
		"attempt": strconv.Itoa(rec.Attempt)}
	h := hold.New(r.l, &s.runCfg, keys.Record{Since: rec.Start, Value: r.name, Meta: meta},
		hold.Key{Key: rec.Key, Watch: watch.MirrorOf{Hub: s.hub, Base: s.sp.Base()}})
	then := append([]clientv3.Op{clientv3.OpPut(s.stateKey, ns.encode()), clientv3.OpPut(hkey, rec.encode())}, r.trims(v, adding)...)
	created, err := h.Create(ctx, hold.Spec{If: cmps, Then: then, Else: []clientv3.Op{clientv3.OpGet(s.stateKey, clientv3.WithKeysOnly())}})
	if err != nil {
		h.Abandon(ctx)
		return err
	}
	if created.Failed() {
		h.Abandon(ctx)
		return r.synced(ctx, failedAt(v, created.Else[0].GetResponseRange().Kvs, created.At))
	}
	if err := h.Grant(); err != nil {
		// Claimed, but this session cannot vouch for it: the run is left
		// to the crash policy, as if this replica had crashed.
		h.Abandon(ctx)
		return err
	}
	r.countSkipped(skipped)
	if rec.Attempt > 1 {
		r.l.Metrics().ScheduleRun(s.Name(), string(Crashed), 0)
		r.l.Logger().Warn("coord schedule: a run's replica crashed; running it again", "name", s.Name(), "seq", rec.Seq,
			"tick", rec.Tick, "token", created.Rev)
	}
	tick := Tick{Time: rec.Tick, Seq: rec.Seq, Token: created.Rev, Attempt: rec.Attempt, Trigger: rec.Trigger, key: rec.Key}
	r.add(h, tick, hkey, rec)
	return r.synced(ctx, created.At)
}

// trims returns the deletes that keep the history at its size once adding
// records are added: the oldest ended runs go first, runs still going
// are kept.
func (r *replica) trims(v view, adding int) []clientv3.Op {
	total := len(v.hist) + adding
	var ops []clientv3.Op
	for _, e := range v.hist {
		if total <= r.s.o.history {
			break
		}
		if e.run.Outcome != Running {
			ops = append(ops, clientv3.OpDelete(e.key))
			total--
		}
	}
	return ops
}

// crashed handles a run whose key went without an outcome: its replica's
// session ended while it ran. Under CrashRerun a first attempt is claimed
// again, by this replica, in the Txn that records the crash; otherwise
// the crash is recorded. Either way the record's mod revision is
// compared, so one replica handles each crash once.
func (r *replica) crashed(ctx context.Context, v view, e entry) error {
	s := r.s
	now := r.clock.Now()
	cmp := clientv3.Compare(clientv3.ModRevision(e.key), "=", e.mod)
	if s.o.crash == CrashRerun && e.run.Attempt < 2 {
		ns := v.st
		ns.By, ns.At, ns.Due = r.name, now, time.Time{} // the put moves the state: a run key never appears without it
		rec := Run{Seq: e.run.Seq, Tick: e.run.Tick, Attempt: e.run.Attempt + 1, Trigger: e.run.Trigger, Replica: r.name,
			Start: now, Outcome: Running, Key: s.sp.Key(partRun, seqID(e.run.Seq)+"."+r.l.NextID())}
		return r.begin(ctx, v, ns, rec, []clientv3.Cmp{cmp, r.stateCmp(v)}, 0, nil)
	}
	cr := e.run
	cr.Outcome, cr.Token, cr.End, cr.Key = Crashed, e.mod, now, ""
	cr.Error = fmt.Sprintf("the session of replica %s ended while the run was going", e.run.Replica)
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(e.key, cr.encode())).
		Else(clientv3.OpGet(e.key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		at := resp.Header.Revision
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
			at = kvs[0].ModRevision // the record another replica wrote
		}
		return r.synced(ctx, at)
	}
	r.l.Metrics().ScheduleRun(s.Name(), string(Crashed), 0)
	r.l.Logger().Warn("coord schedule: a run's replica crashed; the run is left", "name", s.Name(), "seq", e.run.Seq,
		"tick", e.run.Tick, "crashed_replica", e.run.Replica)
	return r.synced(ctx, resp.Header.Revision)
}
