package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

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

func (h *holdFlags) register(fs *flag.FlagSet) {
	h.conn.register(fs)
	fs.DurationVar(&h.ttl, "ttl", session.DefaultTTL, "session lease TTL: how long a crashed coord keeps holding")
	fs.StringVar(&h.prefix, "prefix", "coord/", "root prefix of coord's keys")
	fs.DurationVar(&h.grace, "grace", defaultGrace, "time between SIGTERM and SIGKILL when the hold is lost")
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
		return nil, fmt.Errorf("start a session on %v: %w", cli.Endpoints(), err)
	}
	return s, nil
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
func (hf *holdFlags) runHeld(sup *supervisor, argv []string, stdout, stderr io.Writer, h held) int {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := h.release(ctx); err != nil && !errors.Is(err, h.gone) {
			fmt.Fprintf(stderr, "coord: release %s: %v (the lease ends with the session)\n", h.what, err)
		}
	}()
	res, err := sup.run(child{
		argv:   argv,
		env:    env("COORD_TOKEN", itoa(h.token), "COORD_KEY", h.key),
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		lost:   h.done,
		what:   h.what,
		grace:  hf.grace,
	})
	if err != nil {
		fmt.Fprintf(stderr, "coord: %v\n", err)
	}
	return res.code
}
