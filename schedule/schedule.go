package schedule

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Schedule is a named schedule: a spec and the policies its replicas
// follow. Every replica of a fleet makes its own with the same name and
// spec and calls Run; each tick is run by exactly one of them. A Schedule
// holds no connection state of its own and is safe for concurrent use.
type Schedule struct {
	cli      *clientv3.Client
	hub      *watch.Hub
	sp       keys.Space
	root     string
	spec     Spec
	o        options
	err      error // from New, returned by every method
	label    string
	stateKey string
	runCfg   hold.Config
	repCfg   hold.Config
}

// New returns the schedule called name, ticking by spec. It makes no RPC.
// A nil client, a bad name or option is reported by every method wrapped
// in ErrInvalid; a bad spec wrapped in ErrInvalidSpec, an unknown time
// zone in ErrUnknownTimeZone.
func New(cli *clientv3.Client, name string, spec Spec, opts ...Option) *Schedule {
	o := options{root: keys.DefaultRoot, window: DefaultCatchupWindow, grace: DefaultGrace,
		history: DefaultHistory, clock: systemClock{}, skew: DefaultSkewTolerance, nap: maxNap}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Schedule{cli: cli, o: o, label: fmt.Sprintf("schedule %q", name)}
	s.err = s.init(name, spec)
	return s
}

func (s *Schedule) init(name string, spec Spec) error {
	if len(s.o.errs) > 0 {
		return fmt.Errorf("%s: %w", s.label, errors.Join(s.o.errs...))
	}
	if s.cli == nil {
		return fmt.Errorf("%s: %w: nil etcd client", s.label, ErrInvalid)
	}
	root, err := keys.NormalizeRoot(s.o.root)
	if err != nil {
		return fmt.Errorf("%s: %w: %w", s.label, ErrInvalid, err)
	}
	if s.sp, err = keys.New(root, keys.KindSchedule, name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := spec.Err(); err != nil {
		return fmt.Errorf("%s: %w", s.label, err)
	}
	if s.o.zone != "" {
		loc, err := time.LoadLocation(s.o.zone)
		if err != nil || s.o.zone == "Local" {
			return fmt.Errorf("%s: %w: %q", s.label, ErrUnknownTimeZone, s.o.zone)
		}
		spec = spec.in(loc)
	}
	s.root, s.spec = root, spec
	s.hub = watch.For(s.cli)
	s.stateKey = s.sp.Single(leafState)
	s.runCfg = hold.Config{Kind: keys.KindSchedule, Names: []string{name}, Label: s.label, Noun: "schedule run",
		Errors: hold.Errors{Lost: errRunLost, NotHeld: errRunEnded}}
	s.repCfg = hold.Config{Kind: keys.KindSchedule, // no Names: a replica is not a hold to count
		Label: s.label, Noun: "schedule replica",
		Errors: hold.Errors{Lost: errRunLost, NotHeld: errRunEnded}}
	return nil
}

// errRunLost and errRunEnded are the run keys' lifecycle sentinels; they
// never reach users (a lost run is reported as Crashed by the others).
var (
	errRunLost  = errors.New("schedule: run lost")
	errRunEnded = errors.New("schedule: run already ended")
)

// Name returns the schedule's name.
func (s *Schedule) Name() string { return s.sp.Name() }

// Spec returns the schedule's spec.
func (s *Schedule) Spec() Spec { return s.spec }

// Err returns the error New found in its arguments, or nil: the error
// every method would return.
func (s *Schedule) Err() error { return s.err }

// jitter is the tick's delay: the same on every replica, so they agree on
// when it is due, and spread over [0, jitter) across ticks and names.
func (s *Schedule) jitter(t time.Time) time.Duration {
	if s.o.jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(s.sp.Base()))
	h.Write([]byte(strconv.FormatInt(t.UnixNano(), 10)))
	return time.Duration(h.Sum64() % uint64(s.o.jitter))
}

// caller names who pauses or triggers from this process.
func (s *Schedule) caller() string {
	if s.o.replica != "" {
		return s.o.replica
	}
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// cleanup bounds the writes made after the caller's context ended.
const cleanupTimeout = 5 * time.Second

func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}
