package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func init() {
	register("queue", "push, claim and inspect a work queue (push|claim|len|dead|redrive|discard|config)", runQueue)
}

const queueHelp = `usage: coord queue SUBCOMMAND NAME [flags] [args]

subcommands:
  push NAME [PAYLOAD]       add a message (PAYLOAD, or stdin when absent or "-"); prints its id
  claim NAME [-- CMD...]    take the next message; with CMD, run it on the message and ack or nack
  len NAME                  count ready, claimed, delayed and dead messages
  dead NAME                 list the dead letters, with why each died
  config NAME [flags]       show or change the queue's stored settings (attempts, backoff, retention)
  redrive NAME ID           put a dead letter back in the queue
  discard NAME ID           delete a dead letter for good
  ack                       (explains why acks happen inside claim)

Run 'coord queue SUBCOMMAND -h' for its flags.
`

func runQueue(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, queueHelp)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	sub := map[string]func([]string, io.Writer, io.Writer) int{
		"push": queuePush, "claim": queueClaim, "len": queueLen, "dead": queueDead,
		"redrive": queueRedrive, "discard": queueDiscard, "config": queueConfig, "ack": queueAck, "nack": queueAck,
	}[args[0]]
	if sub == nil {
		fmt.Fprintf(stderr, "coord queue: unknown subcommand %q; run 'coord queue -h' for usage\n", args[0])
		return exitUsage
	}
	return sub(args[1:], stdout, stderr)
}

// queueFlags are the flags every queue subcommand shares.
type queueFlags struct {
	conn        connFlags
	prefix      string
	maxAttempts int
	out         outputFlag
	checks      []func() int // the subcommand's own usage checks
}

func (q *queueFlags) register(fs *flagSet) {
	q.conn.register(fs)
	registerPrefix(fs, &q.prefix)
}

// open parses args, checks that there are want positional arguments
// (NAME first) and every usage rule, then connects. On failure it returns
// an exit code >= 0.
func (q *queueFlags) open(fs *flagSet, args []string, stderr io.Writer, want ...string) (pos, argv []string, cli *clientv3.Client, qu *queue.Queue, code int) {
	pos, argv, code = splitArgs(fs, args)
	if code >= 0 {
		return nil, nil, nil, nil, code
	}
	optional := 0
	if fs.cmd == "queue push" {
		optional = 1 // PAYLOAD
	}
	if len(pos) < len(want) || len(pos) > len(want)+optional {
		if fs.cmd == "queue claim" && len(argv) == 0 && len(pos) > 1 {
			return nil, nil, nil, nil, usageErr(fs, stderr, "CMD must follow '--' (coord queue claim NAME -- %s)", quoteCmd(pos[1:]))
		}
		return nil, nil, nil, nil, usageErr(fs, stderr, "want %s, got %d arguments", strings.Join(want, " "), len(pos))
	}
	if len(argv) > 0 && fs.cmd != "queue claim" {
		return nil, nil, nil, nil, usageErr(fs, stderr, "takes no command after --")
	}
	checks := append([]func() int{
		func() int { return checkName(fs, pos[0]) },
		func() int { return checkPrefix(fs, q.prefix) },
		func() int { return q.out.check(fs) },
		func() int {
			if err := q.conn.check(); err != nil {
				return usageErr(fs, stderr, "%v", err)
			}
			return -1
		},
	}, q.checks...)
	for _, c := range checks {
		if code := c(); code >= 0 {
			return nil, nil, nil, nil, code
		}
	}
	cli, err := q.conn.client()
	if err != nil {
		return nil, nil, nil, nil, fail(stderr, "queue %q: %v", pos[0], err)
	}
	opts := []queue.Option{queue.WithPrefix(q.prefix)}
	if q.maxAttempts > 0 {
		opts = append(opts, queue.WithMaxAttempts(q.maxAttempts))
	}
	return pos, argv, cli, queue.New(cli, pos[0], opts...), -1
}

func (q *queueFlags) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), q.conn.dialTimeout+10*time.Second)
}

func queuePush(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue push", "NAME [PAYLOAD|-] [--priority P] [--delay D] [--idempotency-key K] [--unique K [--unique-for D]]\n\nAdds a message and prints its id. The payload is PAYLOAD, or stdin when it is\nabsent or \"-\". Lower priorities are claimed first; FIFO within one. With\n--unique, a message with the same key still pending or in flight (or, with\n--unique-for, enqueued within D) refuses this one: coord prints the existing\nid and exits 75.", stderr)
	var q queueFlags
	q.register(fs)
	prio := fs.Int("priority", 0, "priority: lower is claimed first")
	delay := fs.Duration("delay", 0, "claimable only after this long")
	idem := fs.String("idempotency-key", "", "do nothing (and print the first id) if a message with this key is still queued")
	uniq := fs.String("unique", "", "refuse the message (exit 75) while one with this key is pending or in flight")
	uniqFor := fs.Duration("unique-for", 0, "with --unique: refuse it for this long after one with the key was enqueued, whatever became of it")
	// Checked before open, with the other usage rules: a bad --unique-for
	// must not cost a connection, nor wait for a payload on stdin.
	q.checks = []func() int{func() int {
		if *uniqFor < 0 || *uniqFor > 0 && *uniq == "" {
			return usageErr(fs, stderr, "--unique-for takes a positive duration, with --unique")
		}
		return -1
	}}
	pos, _, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	var payload []byte
	if len(pos) == 2 && pos[1] != "-" {
		payload = []byte(pos[1])
	} else {
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fail(stderr, "queue push: read stdin: %v", err)
		}
		payload = b
	}
	opts := []queue.EnqueueOption{queue.WithPriority(*prio)}
	if *delay != 0 {
		opts = append(opts, queue.WithDelay(*delay))
	}
	if *idem != "" {
		opts = append(opts, queue.WithIdempotencyKey(*idem))
	}
	switch {
	case *uniqFor > 0:
		opts = append(opts, queue.UniqueFor(*uniq, *uniqFor))
	case *uniq != "":
		opts = append(opts, queue.Unique(*uniq))
	}
	ctx, cancel := q.timeout()
	defer cancel()
	id, err := qu.Enqueue(ctx, payload, opts...)
	if errors.Is(err, queue.ErrDuplicate) {
		fmt.Fprintln(stdout, id)
		fmt.Fprintf(stderr, "coord: %v\n", err)
		return exitConflict
	}
	if err != nil {
		return fail(stderr, "%v", err)
	}
	fmt.Fprintln(stdout, id)
	return 0
}

const claimHelp = `NAME [--wait D] [--conflict-exit 75] [--nack-delay D] [--max-attempts N] [--ttl 15s] [--grace 10s] [-o text|json] [-- CMD [ARGS...]]

Claims the next ready message, waiting for one (at most --wait, if set:
exit 75, or --conflict-exit, when none came).

With CMD: runs CMD with the payload on its stdin and COORD_MESSAGE_ID,
COORD_ATTEMPT and COORD_TOKEN (the claim's fencing token) in its
environment, holding the claim while it runs. Exit 0 acks the message; any
other status nacks it (claimable again after the queue's stored backoff,
or --nack-delay; at the queue's stored max attempts it goes to the dead
letters, with CMD's exit status as its last error). If the claim is lost,
CMD gets SIGTERM, then SIGKILL after --grace, and the message is delivered
again to another consumer. CMD's process group never outlives the claim,
as with 'coord lock'. coord exits with CMD's status.

Without CMD: prints the message id on one line and the payload after it
(with -o json, one object: id, attempt, token, payload as text when it is
UTF-8, payload_base64 always), then acks the message: it is taken off the
queue.`

// messageJSON is a claimed message with -o json.
type messageJSON struct {
	Queue   string `json:"queue"`
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
	Token   int64  `json:"token"`
	payloadJSON
}

func queueClaim(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue claim", claimHelp, stderr)
	var q queueFlags
	q.register(fs)
	q.out.register(fs)
	ttl := fs.Duration("ttl", session.DefaultTTL, "session lease TTL: how long a crashed consumer keeps its claim (at least 1s)")
	grace := fs.Duration("grace", defaultGrace, "time between SIGTERM and SIGKILL when the claim is lost")
	wait := fs.Duration("wait", 0, "give up (exit --conflict-exit) if no message is ready within this long; 0 waits forever")
	conflict := fs.Int("conflict-exit", exitConflict, "exit code when no message came within --wait")
	nackDelay := fs.Duration("nack-delay", 0, "when CMD fails, the message is claimable again after this long (default: the queue's stored backoff)")
	fs.IntVar(&q.maxAttempts, "max-attempts", 0, "expect the queue's stored max attempts to be N, and store it on a new queue (default: whatever is stored; see 'coord queue config')")
	var withCmd bool
	q.checks = []func() int{
		func() int {
			switch {
			case *ttl < time.Second:
				return usageErr(fs, stderr, "--ttl %s is under 1s, the shortest lease etcd grants", *ttl)
			case *wait < 0 || *grace < 0 || *nackDelay < 0:
				return usageErr(fs, stderr, "--wait, --grace and --nack-delay must not be negative")
			case *conflict < 0 || *conflict > 255:
				return usageErr(fs, stderr, "--conflict-exit %d is not an exit code (0-255)", *conflict)
			case q.maxAttempts < 0:
				return usageErr(fs, stderr, "--max-attempts must not be negative, got %d", q.maxAttempts)
			case withCmd && q.out.json():
				return usageErr(fs, stderr, "-o json prints a message; with CMD the message goes to CMD's stdin")
			}
			return -1
		},
	}
	for _, a := range args {
		withCmd = withCmd || a == "--"
	}
	pos, argv, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	name := pos[0]
	sup, ctx := newSupervisor()
	defer sup.stop()
	s, err := newSession(ctx, cli, q.conn.dialTimeout, *ttl, q.prefix)
	if err != nil {
		return fail(stderr, "queue %q: %v", name, err)
	}
	defer s.Close()
	cctx := ctx
	if *wait > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	m, err := qu.Claim(cctx, s)
	if err != nil {
		if c := sup.interrupted(); c >= 0 {
			return c
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			fmt.Fprintf(stderr, "coord: queue %q: no message ready within %s\n", name, *wait)
			return *conflict
		}
		return fail(stderr, "%v", err)
	}
	failure := errors.New("the command failed")
	settle := func(ack bool) error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if ack {
			return m.Ack(ctx)
		}
		delay, set := *nackDelay, false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "nack-delay" })
		if !set {
			cfg, err := qu.Config(ctx)
			if err != nil {
				return err
			}
			delay = cfg.Backoff.Delay(m.Attempt)
		}
		return m.Nack(ctx, delay, queue.WithError(failure))
	}
	if len(argv) == 0 {
		var werr error
		if q.out.json() {
			b, err := json.Marshal(messageJSON{Queue: name, ID: m.ID, Attempt: m.Attempt, Token: m.Token(), payloadJSON: newPayloadJSON(m.Payload)})
			if err == nil {
				_, err = fmt.Fprintf(stdout, "%s\n", b)
			}
			werr = err
		} else {
			fmt.Fprintln(stdout, m.ID)
			_, werr = stdout.Write(m.Payload)
			if werr == nil && len(m.Payload) > 0 && m.Payload[len(m.Payload)-1] != '\n' {
				_, werr = fmt.Fprintln(stdout)
			}
		}
		if werr != nil {
			_ = settle(false)
			return fail(stderr, "queue %q: write message %s: %v (nacked)", name, m.ID, werr)
		}
		if err := settle(true); err != nil {
			return fail(stderr, "%v", err)
		}
		return 0
	}
	res, err := sup.run(child{
		argv:   argv,
		env:    env("COORD_MESSAGE_ID", m.ID, "COORD_ATTEMPT", strconv.Itoa(m.Attempt), "COORD_TOKEN", itoa(m.Token())),
		stdin:  bytes.NewReader(m.Payload),
		stdout: stdout,
		stderr: stderr,
		lost:   m.Done(),
		what:   fmt.Sprintf("claim of message %s", m.ID),
		grace:  *grace,
	})
	if err != nil {
		fmt.Fprintf(stderr, "coord: %v\n", err)
	}
	if res.lost {
		return res.code
	}
	ack := err == nil && res.code == 0
	if err != nil {
		failure = err
	} else {
		failure = fmt.Errorf("%s exited with status %d", argv[0], res.code)
	}
	if serr := settle(ack); serr != nil {
		fmt.Fprintf(stderr, "coord: settle: %v\n", serr)
		if res.code == 0 {
			return exitFail
		}
	}
	return res.code
}

func queueLen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue len", "NAME [-o text|json]\n\nPrints the queue's counts: ready, claimed, delayed and dead messages\n(with -o json: {\"queue\":NAME,\"ready\":N,\"claimed\":N,\"delayed\":N,\"dead\":N}).", stderr)
	var q queueFlags
	q.register(fs)
	q.out.register(fs)
	pos, _, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := q.timeout()
	defer cancel()
	st, err := qu.Stats(ctx)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if q.out.json() {
		return writeJSON(stdout, stderr, struct {
			Queue   string `json:"queue"`
			Ready   int64  `json:"ready"`
			Claimed int64  `json:"claimed"`
			Delayed int64  `json:"delayed"`
			Dead    int64  `json:"dead"`
		}{pos[0], st.Ready, st.Claimed, st.Delayed, st.Dead})
	}
	fmt.Fprintf(stdout, "ready %d\nclaimed %d\ndelayed %d\ndead %d\n", st.Ready, st.Claimed, st.Delayed, st.Dead)
	return 0
}

// deadJSON is one dead letter with -o json.
type deadJSON struct {
	ID        string      `json:"id"`
	Attempts  int         `json:"attempts"`
	Enqueued  time.Time   `json:"enqueued"`
	Died      *time.Time  `json:"died,omitempty"`
	Reason    string      `json:"reason"`
	LastError string      `json:"last_error,omitempty"`
	Claimed   []time.Time `json:"claimed,omitempty"`
	payloadJSON
}

const deadHelp = `NAME [-o text|json]

Lists the dead letters, oldest first, one per line: ID, attempts, when it
died, the reason, the last error (quoted) and the payload (quoted, cut at
200 bytes). With -o json, one JSON array of objects: id, attempts,
enqueued, died, reason, last_error, claimed (the times of its last
claims), payload (when UTF-8) and payload_base64, whole.`

func queueDead(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue dead", deadHelp, stderr)
	var q queueFlags
	q.register(fs)
	q.out.register(fs)
	_, _, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := q.timeout()
	defer cancel()
	dls, err := qu.DeadLetters(ctx)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if q.out.json() {
		out := []deadJSON{}
		for _, d := range dls {
			j := deadJSON{ID: d.ID, Attempts: d.Attempts, Enqueued: d.Enqueued.UTC(), Reason: d.Reason, LastError: d.LastError, payloadJSON: newPayloadJSON(d.Payload)}
			if !d.Died.IsZero() {
				died := d.Died.UTC()
				j.Died = &died
			}
			for _, c := range d.Claimed {
				j.Claimed = append(j.Claimed, c.UTC())
			}
			out = append(out, j)
		}
		return writeJSON(stdout, stderr, out)
	}
	for _, d := range dls {
		p := d.Payload
		more := ""
		if len(p) > 200 {
			p, more = p[:200], "..."
		}
		died := "-"
		if !d.Died.IsZero() {
			died = d.Died.UTC().Format(time.RFC3339)
		}
		reason := d.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(stdout, "%s\t%d\t%s\t%s\t%q\t%q%s\n", d.ID, d.Attempts, died, reason, d.LastError, p, more)
	}
	return 0
}

const configHelp = `NAME [--max-attempts N] [--backoff-min D] [--backoff-max D] [--jitter F] [--dead-retention D] [-o text|json]

Prints the queue's stored settings, which every consumer follows. With
any flag, changes those settings first (the others keep their stored
values) for every producer and consumer of the queue.`

// configJSON is a queue's settings with -o json.
type configJSON struct {
	Queue         string  `json:"queue"`
	MaxAttempts   int     `json:"max_attempts"`
	BackoffMin    string  `json:"backoff_min"`
	BackoffMax    string  `json:"backoff_max"`
	Jitter        float64 `json:"jitter"`
	DeadRetention string  `json:"dead_retention"`
}

func queueConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue config", configHelp, stderr)
	var q queueFlags
	q.register(fs)
	q.out.register(fs)
	attempts := fs.Int("max-attempts", 0, "claims without an ack before a message is dead-lettered (0: retry forever)")
	bmin := fs.Duration("backoff-min", 0, "delay after a message's first failure")
	bmax := fs.Duration("backoff-max", 0, "the longest delay after a failure")
	jitter := fs.Float64("jitter", 0, "fraction of each delay drawn at random (0..1)")
	retention := fs.Duration("dead-retention", 0, "how long dead letters are kept (0: until re-driven or discarded)")
	pos, _, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := q.timeout()
	defer cancel()
	cfg, err := qu.Config(ctx)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	changed := false
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "max-attempts":
			cfg.MaxAttempts = *attempts
		case "backoff-min":
			cfg.Backoff.Min = *bmin
		case "backoff-max":
			cfg.Backoff.Max = *bmax
		case "jitter":
			cfg.Backoff.Jitter = *jitter
		case "dead-retention":
			cfg.DeadRetention = *retention
		default:
			return
		}
		changed = true
	})
	if changed {
		if err := qu.SetConfig(ctx, cfg); err != nil {
			if errors.Is(err, queue.ErrInvalid) {
				return usageErr(fs, stderr, "%v", err)
			}
			return fail(stderr, "%v", err)
		}
	}
	if q.out.json() {
		return writeJSON(stdout, stderr, configJSON{Queue: pos[0], MaxAttempts: cfg.MaxAttempts, BackoffMin: cfg.Backoff.Min.String(),
			BackoffMax: cfg.Backoff.Max.String(), Jitter: cfg.Backoff.Jitter, DeadRetention: cfg.DeadRetention.String()})
	}
	fmt.Fprintf(stdout, "max-attempts %d\nbackoff-min %s\nbackoff-max %s\njitter %g\ndead-retention %s\n",
		cfg.MaxAttempts, cfg.Backoff.Min, cfg.Backoff.Max, cfg.Backoff.Jitter, cfg.DeadRetention)
	return 0
}

func queueRedrive(args []string, stdout, stderr io.Writer) int {
	return queueDeadOp("redrive", "puts the dead letter ID back in the queue, at its place in line, with its attempts reset", args, stdout, stderr,
		func(ctx context.Context, q *queue.Queue, id string) error { return q.Redrive(ctx, id) })
}

func queueDiscard(args []string, stdout, stderr io.Writer) int {
	return queueDeadOp("discard", "deletes the dead letter ID for good", args, stdout, stderr,
		func(ctx context.Context, q *queue.Queue, id string) error { return q.Discard(ctx, id) })
}

func queueDeadOp(verb, doc string, args []string, stdout, stderr io.Writer, op func(context.Context, *queue.Queue, string) error) int {
	fs := newFlags("queue "+verb, "NAME ID\n\nIt "+doc+".", stderr)
	var q queueFlags
	q.register(fs)
	pos, _, cli, qu, code := q.open(fs, args, stderr, "NAME", "ID")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := q.timeout()
	defer cancel()
	if err := op(ctx, qu, pos[1]); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			return fail(stderr, "queue %q: %s: no dead letter %q", pos[0], verb, pos[1])
		}
		return fail(stderr, "%v", err)
	}
	fmt.Fprintf(stdout, "%s %s\n", verb, pos[1])
	return 0
}

// queueAck explains why there is no separate ack: a claim lives on the
// claiming process's session, so no other process can settle it.
func queueAck(args []string, stdout, stderr io.Writer) int {
	fmt.Fprint(stderr, `coord: queue ack/nack: a claim is held by the session of the process that
claimed it and ends with that process, so it cannot be settled from another
one. Use 'coord queue claim NAME -- CMD...': it acks when CMD exits 0 and
nacks otherwise. 'coord queue claim NAME' without CMD prints and acks.
`)
	return 2
}
