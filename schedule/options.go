package schedule

import (
	"fmt"
	"time"
)

// CatchupPolicy says what happens to ticks that came while no replica
// could run them (every replica was down, or paused by the runtime past
// their time). A tick is missed when a later tick is due already, or,
// under CatchupSkip, when it could not start within the grace.
type CatchupPolicy int

const (
	// CatchupLatest runs the latest missed tick once, at once, and skips
	// the older ones (as Kubernetes CronJobs do). The default.
	CatchupLatest CatchupPolicy = iota
	// CatchupSkip runs no missed tick: a tick runs only if it starts within
	// the grace of its time (WithGrace) and no later tick is due.
	CatchupSkip
	// CatchupAll runs every missed tick within the catch-up window
	// (WithCatchupWindow), oldest first, one after the other as the
	// overlap policy allows, and skips the older ones.
	CatchupAll
)

func (p CatchupPolicy) String() string {
	switch p {
	case CatchupLatest:
		return "latest"
	case CatchupSkip:
		return "skip"
	case CatchupAll:
		return "all"
	}
	return fmt.Sprintf("CatchupPolicy(%d)", int(p))
}

// OverlapPolicy says what happens at a tick while an earlier run is
// still going, on any replica.
type OverlapPolicy int

const (
	// OverlapSkip skips the tick. The default.
	OverlapSkip OverlapPolicy = iota
	// OverlapBuffer starts the tick's run as soon as the earlier run ends;
	// at most one run waits so, and ticks that come while one waits are
	// skipped.
	OverlapBuffer
	// OverlapAllow starts the tick's run at once, beside the earlier ones.
	OverlapAllow
	// OverlapCancel cancels the earlier runs (their context is cancelled
	// wherever they run) and starts the tick's run once they have ended,
	// so two runs never overlap.
	OverlapCancel
)

func (p OverlapPolicy) String() string {
	switch p {
	case OverlapSkip:
		return "skip"
	case OverlapBuffer:
		return "buffer"
	case OverlapAllow:
		return "allow"
	case OverlapCancel:
		return "cancel"
	}
	return fmt.Sprintf("OverlapPolicy(%d)", int(p))
}

// CrashPolicy says what happens to a run whose replica's session ended
// while it ran (the process crashed, was killed, or lost etcd for longer
// than its TTL): the run's key goes with the session's lease, and every
// other replica sees it go without an outcome.
type CrashPolicy int

const (
	// CrashLeave records the run as crashed and leaves it: each tick
	// starts at most once. The default.
	CrashLeave CrashPolicy = iota
	// CrashRerun runs the tick once more, at once, on a replica whose
	// session is alive (at least once per tick; a re-run that crashes
	// too is left).
	CrashRerun
)

func (p CrashPolicy) String() string {
	switch p {
	case CrashLeave:
		return "leave"
	case CrashRerun:
		return "rerun"
	}
	return fmt.Sprintf("CrashPolicy(%d)", int(p))
}

// Defaults of the options.
const (
	DefaultHistory       = 20
	MaxHistory           = 1000
	DefaultGrace         = 10 * time.Second
	DefaultCatchupWindow = 24 * time.Hour
	DefaultSkewTolerance = time.Second
)

// Option configures New.
type Option func(*options)

type options struct {
	root    string
	catchup CatchupPolicy
	window  time.Duration
	grace   time.Duration
	overlap OverlapPolicy
	crash   CrashPolicy
	jitter  time.Duration
	history int
	clock   Clock
	nap     time.Duration // the longest sleep between looks at the clock (maxNap; tests shorten it)
	replica string
	zone    string
	skew    time.Duration
	errs    []error
}

func (o *options) fail(format string, a ...any) {
	o.errs = append(o.errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...))
}

// WithPrefix sets the root prefix of the schedule's keys (default
// "coord/"). Run refuses a session of another root.
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// WithCatchup sets the catch-up policy (default CatchupLatest).
func WithCatchup(p CatchupPolicy) Option {
	return func(o *options) {
		if p < CatchupLatest || p > CatchupAll {
			o.fail("unknown catch-up policy %d", int(p))
		}
		o.catchup = p
	}
}

// WithCatchupWindow sets how old a missed tick may be and still be run
// by CatchupLatest or CatchupAll (default 24h). Older ticks are skipped.
func WithCatchupWindow(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.fail("catch-up window %v is not positive", d)
		}
		o.window = d
	}
}

// WithGrace sets how late a tick may start and still run under
// CatchupSkip (default 10s).
func WithGrace(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.fail("grace %v is negative", d)
		}
		o.grace = d
	}
}

// WithOverlap sets the overlap policy (default OverlapSkip).
func WithOverlap(p OverlapPolicy) Option {
	return func(o *options) {
		if p < OverlapSkip || p > OverlapCancel {
			o.fail("unknown overlap policy %d", int(p))
		}
		o.overlap = p
	}
}

// WithCrash sets the crashed-run policy (default CrashLeave).
func WithCrash(p CrashPolicy) Option {
	return func(o *options) {
		if p < CrashLeave || p > CrashRerun {
			o.fail("unknown crash policy %d", int(p))
		}
		o.crash = p
	}
}

// WithJitter delays each tick's start by up to d, by an amount every
// replica computes alike from the schedule's name and the tick (so the
// schedules of a fleet that share a spec do not all hit their resources
// at the same instant, and replicas still agree on when a tick is due).
// Tick.Time stays the tick's own time; lateness includes the jitter.
func WithJitter(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.fail("jitter %v is negative", d)
		}
		o.jitter = d
	}
}

// WithHistory sets how many runs the schedule keeps in etcd, newest first
// (default 20, at most 1000). Runs still going are kept beyond it.
func WithHistory(n int) Option {
	return func(o *options) {
		if n < 1 || n > MaxHistory {
			o.fail("history of %d runs: want 1 to %d", n, MaxHistory)
		}
		o.history = n
	}
}

// WithClock sets the clock the schedule reads and waits on (default the
// system clock): for tests.
func WithClock(c Clock) Option {
	return func(o *options) {
		if c == nil {
			o.fail("nil clock")
		}
		o.clock = c
	}
}

// WithReplica names this replica in the schedule's history (default the
// session's host:pid).
func WithReplica(name string) Option {
	return func(o *options) {
		if len(name) > 256 {
			o.fail("replica name of %d bytes: at most 256", len(name))
		}
		o.replica = name
	}
}

// WithTimeZone sets the time zone of a cron spec whose expression names
// none (default UTC: replicas on hosts in different zones must still
// agree). name is an IANA zone, "Europe/Berlin"; an unknown one is an
// error wrapping ErrUnknownTimeZone. Every specs have no time zone.
func WithTimeZone(name string) Option {
	return func(o *options) { o.zone = name }
}

// WithSkewTolerance sets how far replicas' clocks may be from the true
// time (default 1s): no tick starts earlier than its time minus this, and
// a replica that sees a claim arrive earlier than twice this by its own
// clock reports the clocks as skewed (see the package doc).
func WithSkewTolerance(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.fail("skew tolerance %v is not positive", d)
		}
		o.skew = d
	}
}
