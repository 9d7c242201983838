package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coord-go/coord/election"
)

func init() {
	register("elect", "run a command only while this process leads an election", runElect)
	register("leader", "print an election's current leader", runLeader)
	register("observe", "print an election's leader and every change until Ctrl-C", runObserve)
}

const electHelp = `NAME VALUE [--once] [--wait D] [--conflict-exit 75] [--ttl 15s] [--grace 10s] -- CMD [ARGS...]

Campaigns in the election NAME with VALUE (what 'coord leader NAME' shows),
runs CMD once elected, and resigns when CMD exits, so the next candidate
leads at once. CMD gets COORD_TOKEN, the leadership's fencing token
(strictly increasing across leaders), and COORD_VALUE.

If the leadership is lost (the session's lease expired or was revoked, or
the key was deleted), CMD gets SIGTERM, then SIGKILL after --grace, and
coord campaigns again with a new session and runs CMD again once it leads;
with --once it exits instead. When CMD exits on its own, coord resigns and
exits with CMD's status. Signals sent to coord are passed on to CMD. CMD's
process group never outlives the leadership, as with 'coord lock' (see
'coord lock -h').

With --wait D, each campaign waits at most D to lead; when it does not,
coord leaves the line and exits with --conflict-exit (75).

Exit status: CMD's (128+N if signal N ended it); 75 (--conflict-exit) when
--wait ran out; 1 when coord failed; 2 for bad usage.`

// recampaignDelay spaces campaigns after a loss, so a flapping connection
// does not become a tight loop.
const recampaignDelay = 500 * time.Millisecond

func runElect(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("elect", electHelp, stderr)
	var h holdFlags
	h.register(fs)
	once := fs.Bool("once", false, "exit after losing the leadership instead of campaigning again")
	var a acquireFlags
	a.register(fs, "the leadership", false)
	pos, argv, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	switch {
	case len(argv) == 0 && len(pos) > 2:
		return usageErr(fs, stderr, "CMD must follow '--' (coord elect NAME VALUE -- %s)", quoteCmd(pos[2:]))
	case len(pos) != 2:
		return usageErr(fs, stderr, "want NAME and VALUE, got %d arguments", len(pos))
	case len(argv) == 0:
		return usageErr(fs, stderr, "no command given after --")
	}
	name, value := pos[0], pos[1]
	if code := checkName(fs, name); code >= 0 {
		return code
	}
	if code := h.check(fs); code >= 0 {
		return code
	}
	if code := a.check(fs); code >= 0 {
		return code
	}

	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "election %q: %v", name, err)
	}
	defer cli.Close()
	for {
		s, err := newSession(ctx, cli, h.conn.dialTimeout, h.ttl, h.prefix)
		if err != nil {
			if c := sup.interrupted(); c >= 0 {
				return c
			}
			return fail(stderr, "election %q: %v", name, err)
		}
		e := election.New(s, name)
		wctx, cancel := a.bound(ctx)
		err = e.Campaign(wctx, value)
		cancel()
		if err != nil {
			s.Close()
			if c := sup.interrupted(); c >= 0 {
				return c
			}
			if a.timedOut(ctx, err) {
				fmt.Fprintf(stderr, "coord: election %q: not leading after %s; not running %s\n", name, a.wait, quoteCmd(argv))
				return a.conflict
			}
			if !*once && !errors.Is(err, election.ErrInvalid) && s.Err() != nil {
				// The session ended while waiting in line: wait again.
				fmt.Fprintf(stderr, "coord: election %q: %v; campaigning again\n", name, err)
				if !sleepCtx(ctx, recampaignDelay) {
					return sup.interrupted()
				}
				continue
			}
			return fail(stderr, "%v", err)
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

const leaderHelp = `NAME [--prefix coord/] [-o text|json]

Prints the current leader of the election NAME as VALUE<TAB>TOKEN, where
TOKEN is the leadership's fencing token; with -o json, as
{"election":NAME,"leader":true,"value":VALUE,"token":TOKEN}, or
{"election":NAME,"leader":false} when no one leads.

Exit status: 0 when someone leads; 3 when no one does; 1 when etcd cannot
be reached or read (the message says why); 2 for bad usage.`

// leaderJSON is one answer of leader and observe with -o json.
type leaderJSON struct {
	Time     string `json:"time,omitempty"`
	Election string `json:"election"`
	Leader   bool   `json:"leader"`
	Value    string `json:"value,omitempty"`
	Token    int64  `json:"token,omitempty"`
}

func runLeader(args []string, stdout, stderr io.Writer) int {
	h, o, name, code := nameOnly("leader", leaderHelp, args, stderr)
	if code >= 0 {
		return code
	}
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "election %q: %v", name, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), h.conn.dialTimeout+5*time.Second)
	defer cancel()
	// Election reads need a session for the prefix only; a short TTL keeps
	// the lease cheap even if Close cannot revoke it.
	s, err := newSession(ctx, cli, h.conn.dialTimeout, 5*time.Second, h.prefix)
	if err != nil {
		return fail(stderr, "election %q: %v", name, err)
	}
	defer s.Close()
	l, err := election.New(s, name).Leader(ctx)
	if errors.Is(err, election.ErrNoLeader) {
		if o.json() {
			writeJSON(stdout, stderr, leaderJSON{Election: name})
		} else {
			fmt.Fprintf(stderr, "coord: election %q has no leader\n", name)
		}
		return exitNoLeader
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if o.json() {
		return writeJSON(stdout, stderr, leaderJSON{Election: name, Leader: true, Value: l.Value, Token: l.Token})
	}
	fmt.Fprintf(stdout, "%s\t%d\n", l.Value, l.Token)
	return 0
}

const observeHelp = `NAME [--prefix coord/] [-o text|json]

Prints the current leader of the election NAME, then every change (a new
leader, a new value, no leader), one line each, until interrupted:

  2026-01-02T15:04:05Z leader VALUE token TOKEN
  2026-01-02T15:04:09Z no leader

With -o json, one JSON object a line (JSON Lines), as 'coord leader -o json'
prints with a "time" field added.`

func runObserve(args []string, stdout, stderr io.Writer) int {
	h, o, name, code := nameOnly("observe", observeHelp, args, stderr)
	if code >= 0 {
		return code
	}
	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "election %q: %v", name, err)
	}
	defer cli.Close()
	s, err := newSession(ctx, cli, h.conn.dialTimeout, 5*time.Second, h.prefix)
	if err != nil {
		return fail(stderr, "election %q: %v", name, err)
	}
	defer s.Close()
	for l := range election.New(s, name).Observe(ctx) {
		ts := time.Now().UTC().Format(time.RFC3339)
		switch {
		case o.json():
			if code := writeJSON(stdout, stderr, leaderJSON{Time: ts, Election: name, Leader: l.Token != 0, Value: l.Value, Token: l.Token}); code != 0 {
				return code
			}
		case l.Token == 0:
			fmt.Fprintf(stdout, "%s no leader\n", ts)
		default:
			fmt.Fprintf(stdout, "%s leader %s token %d\n", ts, l.Value, l.Token)
		}
	}
	// Observe's channel closes only when ctx ends, which is Ctrl-C.
	return 0
}

// nameOnly parses the arguments of a command that takes one election NAME,
// the connection flags, --prefix and -o; code >= 0 means the command is
// over.
func nameOnly(cmd, help string, args []string, stderr io.Writer) (holdFlags, outputFlag, string, int) {
	fs := newFlags(cmd, help, stderr)
	var h holdFlags
	var o outputFlag
	h.conn.register(fs)
	registerPrefix(fs, &h.prefix)
	o.register(fs)
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return h, o, "", code
	}
	if len(pos) != 1 {
		return h, o, "", usageErr(fs, stderr, "want exactly one NAME, got %d arguments", len(pos))
	}
	for _, c := range []func() int{
		func() int { return checkName(fs, pos[0]) },
		func() int { return o.check(fs) },
		func() int { return checkPrefix(fs, h.prefix) },
		func() int {
			if err := h.conn.check(); err != nil {
				return usageErr(fs, stderr, "%v", err)
			}
			return -1
		},
	} {
		if code := c(); code >= 0 {
			return h, o, "", code
		}
	}
	return h, o, pos[0], -1
}
