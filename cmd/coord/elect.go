package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/internal/keys"
)

func init() {
	register("elect", "run a command only while this process leads an election", runElect)
	register("leader", "print an election's current leader", runLeader)
	register("observe", "print an election's leader and every change until Ctrl-C", runObserve)
}

const electHelp = `NAME VALUE [--once] [--ttl 15s] [--grace 10s] -- CMD [ARGS...]

Campaigns in the election NAME with VALUE (what 'coord leader NAME' shows),
runs CMD once elected, and resigns when CMD exits, so the next candidate
leads at once. CMD gets COORD_TOKEN, the leadership's fencing token
(strictly increasing across leaders), and COORD_VALUE.

If the leadership is lost (the session's lease expired or was revoked, or
the key was deleted), CMD gets SIGTERM, then SIGKILL after --grace, and
coord campaigns again with a new session and runs CMD again once it leads;
with --once it exits instead. When CMD exits on its own, coord resigns and
exits with CMD's status. Signals sent to coord are passed on to CMD.

Exit status: CMD's (128+N if signal N ended it); 1 when coord failed; 2 for
bad usage.`

// recampaignDelay spaces campaigns after a loss, so a flapping connection
// does not become a tight loop.
const recampaignDelay = 500 * time.Millisecond

func runElect(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("elect", electHelp, stderr)
	var h holdFlags
	h.register(fs)
	once := fs.Bool("once", false, "exit after losing the leadership instead of campaigning again")
	pos, argv, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 2 {
		return usageErr(fs, stderr, "elect: want NAME and VALUE, got %d arguments", len(pos))
	}
	if len(argv) == 0 {
		return usageErr(fs, stderr, "elect: no command given after --")
	}
	name, value := pos[0], pos[1]
	if err := keys.ValidateName(name); err != nil {
		return fail(stderr, "elect: %v", err)
	}

	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "elect %q: %v", name, err)
	}
	defer cli.Close()
	for {
		s, err := newSession(ctx, cli, h.conn.dialTimeout, h.ttl, h.prefix)
		if err != nil {
			if c := sup.interrupted(); c >= 0 {
				return c
			}
			return fail(stderr, "elect %q: %v", name, err)
		}
		e := election.New(s, name)
		if err := e.Campaign(ctx, value); err != nil {
			s.Close()
			if c := sup.interrupted(); c >= 0 {
				return c
			}
			if !*once && !errors.Is(err, election.ErrInvalid) && s.Err() != nil {
				// The session ended while waiting in line: wait again.
				fmt.Fprintf(stderr, "coord: election %q: %v; campaigning again\n", name, err)
				if !sleepCtx(ctx, recampaignDelay) {
					return sup.interrupted()
				}
				continue
			}
			return fail(stderr, "election %q: %v", name, err)
		}
		fmt.Fprintf(stderr, "coord: leading election %q as %q (token %d)\n", name, value, e.Token())
		res, err := sup.run(child{
			argv:   argv,
			env:    env("COORD_TOKEN", itoa(e.Token()), "COORD_VALUE", value),
			stdin:  os.Stdin,
			stdout: stdout,
			stderr: stderr,
			lost:   e.Done(),
			what:   fmt.Sprintf("leadership of %q", name),
			grace:  h.grace,
		})
		rctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		_ = e.Resign(rctx)
		cancel()
		s.Close()
		if err != nil {
			fmt.Fprintf(stderr, "coord: %v\n", err)
			return res.code
		}
		if !res.lost || *once {
			return res.code
		}
		fmt.Fprintf(stderr, "coord: campaigning again for %q\n", name)
		if !sleepCtx(ctx, recampaignDelay) {
			return sup.interrupted()
		}
	}
}

// sleepCtx waits for d, or reports false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

const leaderHelp = `NAME [--prefix coord/]

Prints the current leader of the election NAME as VALUE<TAB>TOKEN, where
TOKEN is the leadership's fencing token. Exits 1 with a message on stderr
when no one leads.`

func runLeader(args []string, stdout, stderr io.Writer) int {
	h, name, code := nameOnly("leader", leaderHelp, args, stderr)
	if code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.conn.dialTimeout+5*time.Second)
	defer cancel()
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "leader %q: %v", name, err)
	}
	defer cli.Close()
	// Election reads need a session for the prefix only; a short TTL keeps
	// the lease cheap even if Close cannot revoke it.
	s, err := newSession(ctx, cli, h.conn.dialTimeout, 5*time.Second, h.prefix)
	if err != nil {
		return fail(stderr, "leader %q: %v", name, err)
	}
	defer s.Close()
	l, err := election.New(s, name).Leader(ctx)
	if errors.Is(err, election.ErrNoLeader) {
		return fail(stderr, "election %q has no leader", name)
	}
	if err != nil {
		return fail(stderr, "leader %q: %v", name, err)
	}
	fmt.Fprintf(stdout, "%s\t%d\n", l.Value, l.Token)
	return 0
}

const observeHelp = `NAME [--prefix coord/]

Prints the current leader of the election NAME, then every change (a new
leader, a new value, no leader), one line each, until interrupted:

  2026-01-02T15:04:05Z leader VALUE token TOKEN
  2026-01-02T15:04:09Z no leader`

func runObserve(args []string, stdout, stderr io.Writer) int {
	h, name, code := nameOnly("observe", observeHelp, args, stderr)
	if code >= 0 {
		return code
	}
	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "observe %q: %v", name, err)
	}
	defer cli.Close()
	s, err := newSession(ctx, cli, h.conn.dialTimeout, 5*time.Second, h.prefix)
	if err != nil {
		return fail(stderr, "observe %q: %v", name, err)
	}
	defer s.Close()
	for l := range election.New(s, name).Observe(ctx) {
		ts := time.Now().UTC().Format(time.RFC3339)
		if l.Token == 0 {
			fmt.Fprintf(stdout, "%s no leader\n", ts)
		} else {
			fmt.Fprintf(stdout, "%s leader %s token %d\n", ts, l.Value, l.Token)
		}
	}
	// Observe's channel closes only when ctx ends, which is Ctrl-C.
	return 0
}

// nameOnly parses the arguments of a command that takes one election NAME,
// the connection flags and --prefix; code >= 0 means the command is over.
func nameOnly(cmd, help string, args []string, stderr io.Writer) (holdFlags, string, int) {
	fs := newFlags(cmd, help, stderr)
	var h holdFlags
	h.conn.register(fs)
	fs.StringVar(&h.prefix, "prefix", "coord/", "root prefix of coord's keys")
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return h, "", code
	}
	if len(pos) != 1 {
		return h, "", usageErr(fs, stderr, "%s: want exactly one NAME, got %d arguments", cmd, len(pos))
	}
	if err := keys.ValidateName(pos[0]); err != nil {
		return h, "", fail(stderr, "%s: %v", cmd, err)
	}
	return h, pos[0], -1
}
