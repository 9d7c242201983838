// Package schedule runs jobs once per tick across a fleet: every replica
// makes the same Schedule (a name and a Spec: Every(d), or a Cron
// expression with an optional time zone) and calls Run, and each tick is
// run by exactly one of them, whichever claims it first.
//
//	report := schedule.New(cli, "report", schedule.Every(time.Minute))
//	err := report.Run(ctx, s, func(ctx context.Context, t schedule.Tick) error {
//		// t.Time is the tick, t.Seq the run's number, t.Token its fencing token.
//		return build(ctx, t)
//	})
//
// A tick is claimed by a compare-and-swap on the schedule's state in
// etcd (the last tick decided), in the same Txn that creates the run's key
// on the claimer's session lease and its history record. Replicas follow
// the schedule through their process's one watch of it, so waiting for a
// tick costs no RPC; a claim is one Txn, sent only by the replicas whose
// clock reaches the tick before they see it claimed.
//
// # Policies
//
// Missed ticks (every replica was down) follow the CatchupPolicy: run the
// latest once (the default), skip them, or run all within a window.
// A tick that comes while an earlier run is still going follows the
// OverlapPolicy: skip it (the default), buffer one, allow concurrent
// runs, or cancel the earlier one. A run whose replica's session ended
// while it ran follows the CrashPolicy: leave it (the default) or run it
// once more on another replica. WithJitter spreads ticks; Pause, Resume
// and Trigger act for the whole fleet (coord schedule pause|resume|trigger
// NAME), and History and Status say what it did.
//
// # Clocks
//
// etcd keeps no clock, so no server can tell a replica that its clock is
// wrong; what the package promises is built so that clocks matter as
// little as possible. A replica claims a tick only once its own clock
// has reached it (plus the tick's jitter), and the compare-and-swap makes
// a second start of a tick impossible whatever the clocks say: no tick
// runs twice, however skewed. The assumption is that every replica's
// clock is within the skew tolerance (WithSkewTolerance, default 1 s; NTP
// keeps clocks within milliseconds) of true time; then no tick starts
// more than the tolerance before its time. The assumption is checked on
// every claim: a replica that sees another's claim arrive before its own
// clock reaches the tick by more than twice the tolerance (the most two
// clocks within it can disagree) logs a warning and counts it in
// coord_schedule_early_claims_total. Ticks younger than twice the
// tolerance are never treated as missed: a live replica whose clock lags
// may be about to run them, so a replica whose clock is ahead runs them
// in order instead of skipping them.
//
// # Safety
//
// Each tick starts at most once while its runner's session lives: the
// claim is a compare-and-swap, and a run key is created only with it.
// Tick.Token is the revision of the claim, strictly increasing across
// runs (a re-run's is newer than every run before it): fence writes
// elsewhere with it, and guard writes in etcd with Tick.IsOwner, which
// fails once the run's key is gone. A run's context is cancelled when its
// key is lost (its session ended), when Run's context ends, and under
// OverlapCancel when a later run starts. A run is held on the runner's
// session: when the session ends mid-run (a crash, a kill, a partition
// longer than the TTL), the key goes with the lease and the other
// replicas see it go without an outcome; under CrashRerun one of them
// claims the tick again, once, so a crashed tick can start twice, but
// never on two live sessions at once. The state and the history are
// plain keys, never on a lease; replicas agree on ticks because specs
// depend only on the time (Every is aligned to the Unix epoch, Cron
// defaults to UTC). A Schedule is safe for concurrent use.
package schedule
