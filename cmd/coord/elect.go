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
	register("transfer", "ask an election's leader to hand over to a chosen candidate", runTransfer)
}

const electHelp = `NAME VALUE [--priority N] [--rule fifo|priority|preempt] [--once] [--wait D] [--conflict-exit 75] [--ttl 15s] [--grace 10s] -- CMD [ARGS...]

Campaigns in the election NAME with VALUE (what 'coord leader NAME' shows),
runs CMD once elected, and resigns when CMD exits, so the next candidate
leads at once. CMD gets COORD_TOKEN, the leadership's fencing token
(strictly increasing across leaders), and COORD_VALUE.

--priority N campaigns with priority N (-1000000..1000000, default 0).
Priorities count only in an election whose rule is "priority" (the
highest leads, ties by age) or "preempt" (the same, and a leader steps
aside when a candidate of higher priority joins). --rule sets the rule the
first candidate stores; a candidate with a different --rule is refused.
Without --rule, coord follows whatever rule is stored (fifo when none).

When the leader is asked to step aside (a candidate of higher priority
under "preempt", or 'coord transfer'), CMD gets SIGTERM (SIGKILL after
--grace), coord hands the leadership over once CMD has exited, and
campaigns again.

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
	prio := fs.Int("priority", 0, "this candidate's priority (counts under --rule priority or preempt)")
	ruleName := fs.String("rule", "", "the election's rule: fifo, priority or preempt (default: the stored one)")
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
	if *prio < election.MinPriority || *prio > election.MaxPriority {
		return usageErr(fs, stderr, "--priority %d is out of range (%d..%d)", *prio, election.MinPriority, election.MaxPriority)
	}
	var eopts []election.Option
	switch *ruleName {
	case "":
	case "fifo":
		eopts = append(eopts, election.WithRule(election.Rule{}))
	case "priority":
		eopts = append(eopts, election.WithRule(election.Rule{Priority: true}))
	case "preempt":
		eopts = append(eopts, election.WithRule(election.Rule{Priority: true, Preempt: true}))
	default:
		return usageErr(fs, stderr, "--rule %q: want fifo, priority or preempt", *ruleName)
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
		e := election.New(s, name, eopts...)
		wctx, cancel := a.bound(ctx)
		err = e.Campaign(wctx, value, election.WithPriority(*prio))
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
			asked:  e.Asked(),
			what:   fmt.Sprintf("leadership of %q", name),
			grace:  h.grace,
		})
		// Resign hands over to a requested target, or to the candidate
		// the rule picks next.
		rctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		_ = e.Resign(rctx)
		cancel()
		s.Close()
		if err != nil {
			fmt.Fprintf(stderr, "coord: %v\n", err)
			return res.code
		}
		if res.asked {
			if *once {
				return res.code
			}
			fmt.Fprintf(stderr, "coord: election %q: handed over as asked; campaigning again\n", name)
			if !sleepCtx(ctx, recampaignDelay) {
				return sup.interrupted()
			}
			continue
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
TOKEN is the leadership's fencing token. With -o json it prints
{"election":NAME,"leader":true,"value":VALUE,"token":TOKEN,"candidates":[...]}
(or "leader":false when no one leads), where candidates lists every
candidate in the order the election's rule would elect them, the leader
first, each with its id (what 'coord transfer' takes), value, priority,
metadata, place in line (token), age and lease, and "leader" or
"observer" when it is one. It needs only read access: no session, no
lease, nothing written.

Exit status: 0 when someone leads; 3 when no one does; 1 when etcd cannot
be reached or read (the message says why); 2 for bad usage.`

// leaderJSON is one answer of leader and observe with -o json.
type leaderJSON struct {
	Time       string          `json:"time,omitempty"`
	Election   string          `json:"election"`
	Leader     bool            `json:"leader"`
	Value      string          `json:"value,omitempty"`
	Token      int64           `json:"token,omitempty"`
	Rule       string          `json:"rule,omitempty"`
	Candidates []candidateJSON `json:"candidates,omitempty"`
}

// candidateJSON is one candidate in 'coord leader -o json'.
type candidateJSON struct {
	ID       string            `json:"id"`
	Value    string            `json:"value"`
	Priority int               `json:"priority"`
	Meta     map[string]string `json:"meta,omitempty"`
	Token    int64             `json:"token"`
	Since    string            `json:"since,omitempty"`
	AgeMS    int64             `json:"age_ms,omitempty"`
	Lease    string            `json:"lease"`
	Leader   bool              `json:"leader,omitempty"`
	Observer bool              `json:"observer,omitempty"`
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
	ob := election.NewObserver(cli, name, election.WithPrefix(h.prefix))
	l, err := ob.Leader(ctx)
	if errors.Is(err, election.ErrNoLeader) {
		err = nil
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if o.json() {
		cs, err := ob.Candidates(ctx)
		if err != nil {
			return fail(stderr, "%v", err)
		}
		out := leaderJSON{Election: name, Leader: l.Token != 0, Value: l.Value, Token: l.Token}
		for _, c := range cs {
			cj := candidateJSON{ID: c.ID, Value: c.Value, Priority: c.Priority, Meta: c.Meta, Token: c.Token,
				Lease: fmt.Sprintf("%016x", c.Lease), Leader: c.Leader, Observer: c.Observer}
			if !c.Since.IsZero() {
				cj.Since, cj.AgeMS = c.Since.UTC().Format(time.RFC3339Nano), time.Since(c.Since).Milliseconds()
			}
			out.Candidates = append(out.Candidates, cj)
		}
		if code := writeJSON(stdout, stderr, out); code != 0 {
			return code
		}
	} else if l.Token != 0 {
		fmt.Fprintf(stdout, "%s\t%d\n", l.Value, l.Token)
	}
	if l.Token == 0 {
		if !o.json() {
			fmt.Fprintf(stderr, "coord: election %q has no leader\n", name)
		}
		return exitNoLeader
	}
	return 0
}

const transferHelp = `NAME CANDIDATE [--wait 10s] [--prefix coord/]

Asks the leader of the election NAME to hand the leadership over to
CANDIDATE: a candidate's id, or its value when no id matches and exactly
one candidate has that value ('coord leader NAME -o json' lists both). A
leader running under 'coord elect' or election.Run stops its work and
hands over; other programs see the request through Election.Asked.

coord then waits, at most --wait, until CANDIDATE leads, and prints its
ID<TAB>VALUE<TAB>TOKEN.

Exit status: 0 once CANDIDATE leads; 75 when --wait ran out first; 3 when
no one leads; 1 when CANDIDATE is not a candidate that could lead (or
etcd cannot be reached); 2 for bad usage.`

func runTransfer(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("transfer", transferHelp, stderr)
	var h holdFlags
	h.conn.register(fs)
	registerPrefix(fs, &h.prefix)
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for CANDIDATE to lead")
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 2 {
		return usageErr(fs, stderr, "want NAME and CANDIDATE, got %d arguments", len(pos))
	}
	name, to := pos[0], pos[1]
	if code := checkName(fs, name); code >= 0 {
		return code
	}
	if code := checkPrefix(fs, h.prefix); code >= 0 {
		return code
	}
	if *wait <= 0 {
		return usageErr(fs, stderr, "--wait must be positive, got %s", *wait)
	}
	if err := h.conn.check(); err != nil {
		return usageErr(fs, stderr, "%v", err)
	}
	cli, err := h.conn.client()
	if err != nil {
		return fail(stderr, "election %q: %v", name, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), h.conn.dialTimeout+*wait)
	defer cancel()
	ob := election.NewObserver(cli, name, election.WithPrefix(h.prefix))
	// Watch from before the request, so the handover cannot be missed.
	octx, stop := context.WithCancel(ctx)
	defer stop()
	states := ob.Observe(octx)
	if err := ob.RequestTransfer(ctx, to); err != nil {
		if errors.Is(err, election.ErrNoLeader) {
			fmt.Fprintf(stderr, "coord: election %q has no leader to hand over\n", name)
			return exitNoLeader
		}
		return fail(stderr, "%v", err)
	}
	// The request named one candidate (by id, or by its unique value):
	// wait until the leadership is that candidate's.
	leads := func() (election.Candidate, bool) {
		cs, err := ob.Candidates(ctx)
		if err != nil {
			return election.Candidate{}, false
		}
		for _, c := range cs {
			if c.Leader && (c.ID == to || c.Value == to) {
				return c, true
			}
		}
		return election.Candidate{}, false
	}
	for l := range states {
		if l.Token == 0 {
			continue
		}
		if c, ok := leads(); ok {
			fmt.Fprintf(stdout, "%s\t%s\t%d\n", c.ID, c.Value, l.Token)
			return 0
		}
	}
	fmt.Fprintf(stderr, "coord: election %q: %s does not lead after %s\n", name, to, *wait)
	return exitConflict
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
	for l := range election.NewObserver(cli, name, election.WithPrefix(h.prefix)).Observe(ctx) {
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
