package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// cleanupTimeout bounds an Unlock, Release or Resign after the child ended,
// when coord's own context may already be cancelled.
const cleanupTimeout = 5 * time.Second

// holdFlags are the flags of the commands that run a child under something
// held through a session: lock, sem, elect.
type holdFlags struct {
	conn   connFlags
	ttl    time.Duration
	prefix string
	grace  time.Duration
}

func (h *holdFlags) register(fs *flagSet) {
	h.conn.register(fs)
	fs.DurationVar(&h.ttl, "ttl", session.DefaultTTL, "session lease TTL: how long a crashed coord keeps holding (at least 1s)")
	registerPrefix(fs, &h.prefix)
	fs.DurationVar(&h.grace, "grace", defaultGrace, "time between SIGTERM and SIGKILL when the hold is lost")
}

// registerPrefix adds --prefix, the root every command shares.
func registerPrefix(fs *flagSet, p *string) {
	fs.StringVar(p, "prefix", keys.DefaultRoot, "root prefix of coord's keys: the one your programs give session.WithPrefix")
}

// check finds what can never work before anything connects.
func (h *holdFlags) check(fs *flagSet) int {
	if err := h.conn.check(); err != nil {
		return usageErr(fs, fs.stderr, "%v", err)
	}
	if h.ttl < time.Second {
		return usageErr(fs, fs.stderr, "--ttl %s is under 1s, the shortest lease etcd grants", h.ttl)
	}
	if h.grace < 0 {
		return usageErr(fs, fs.stderr, "--grace must not be negative, got %s", h.grace)
	}
	return checkPrefix(fs, h.prefix)
}

func checkPrefix(fs *flagSet, prefix string) int {
	if _, err := keys.NormalizeRoot(prefix); err != nil {
		return usageErr(fs, fs.stderr, "--prefix: %v", err)
	}
	return -1
}

// checkName makes an invalid name a usage error, found before connecting.
func checkName(fs *flagSet, name string) int {
	if err := keys.ValidateName(name); err != nil {
		return usageErr(fs, fs.stderr, "%v", err)
	}
	return -1
}

// session connects and starts a session; the caller closes both.
func (h *holdFlags) session(ctx context.Context) (*clientv3.Client, *session.Session, error) {
	cli, err := h.conn.client()
	if err != nil {
		return nil, nil, err
	}
	s, err := newSession(ctx, cli, h.conn.dialTimeout, h.ttl, h.prefix)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, s, nil
}

// newSession is session.New bounded by the dial timeout, so an unreachable
// etcd is reported instead of waited for forever.
func newSession(ctx context.Context, cli *clientv3.Client, timeout, ttl time.Duration, prefix string) (*session.Session, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := session.New(ctx, cli, session.WithTTL(ttl), session.WithPrefix(prefix))
	if err != nil {
		return nil, fmt.Errorf("start a session: %w", err)
	}
	return s, nil
}

// acquireFlags bound how long lock, sem and elect wait, and what exit
// code says "not acquired".
type acquireFlags struct {
	try      bool
	wait     time.Duration
	conflict int
}

func (a *acquireFlags) register(fs *flagSet, what string, withTry bool) {
	if withTry {
		fs.BoolVar(&a.try, "try", false, "do not wait: if "+what+" is taken now, skip CMD and exit with --conflict-exit")
	}
	fs.DurationVar(&a.wait, "wait", 0, "wait at most this long for "+what+", then skip CMD and exit with --conflict-exit (0: no limit)")
	fs.IntVar(&a.conflict, "conflict-exit", exitConflict, "exit code when CMD was skipped because "+what+" was not had in time")
}

func (a *acquireFlags) check(fs *flagSet) int {
	if a.try && a.wait > 0 {
		return usageErr(fs, fs.stderr, "--try and --wait exclude each other: --try is --wait 0")
	}
	if a.wait < 0 {
		return usageErr(fs, fs.stderr, "--wait must not be negative, got %s", a.wait)
	}
	if a.conflict < 0 || a.conflict > 255 {
		return usageErr(fs, fs.stderr, "--conflict-exit %d is not an exit code (0-255)", a.conflict)
	}
	return -1
}

// bound returns the context to wait with: ctx, limited by --wait.
func (a *acquireFlags) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.wait > 0 {
		return context.WithTimeout(ctx, a.wait)
	}
	return context.WithCancel(ctx)
}

// timedOut reports whether err is --wait running out, and not coord's own
// context (a signal) ending.
func (a *acquireFlags) timedOut(ctx context.Context, err error) bool {
	return a.wait > 0 && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
}

// held is what lock and sem hold while their child runs.
type held struct {
	what    string // `lock "x"`, for messages
	token   int64
	key     string
	done    <-chan struct{}
	release func(context.Context) error
	gone    error // the release error that only says it was already lost
}

// runHeld runs argv while h is held, with COORD_TOKEN and COORD_KEY in its
// environment, and releases h afterwards (with a timeout of its own). It
// returns the child's exit code; the supervisor kills the child if h is
// lost first.
func (h *holdFlags) runHeld(sup *supervisor, argv []string, stdout, stderr io.Writer, hd held) int {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := hd.release(ctx); err != nil && !errors.Is(err, hd.gone) {
			fmt.Fprintf(stderr, "coord: release: %v (the lease ends with the session)\n", err)
		}
	}()
	res, err := sup.run(child{
		argv:   argv,
		env:    env("COORD_TOKEN", itoa(hd.token), "COORD_KEY", hd.key),
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		lost:   hd.done,
		what:   hd.what,
		grace:  h.grace,
	})
	if err != nil {
		fmt.Fprintf(stderr, "coord: %v\n", err)
	}
	return res.code
}
