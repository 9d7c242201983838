package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	register("queue", "push, claim and inspect a work queue (push|claim|len|dead|redrive|discard)", runQueue)
}

const queueHelp = `usage: coord queue SUBCOMMAND NAME [flags] [args]

subcommands:
  push NAME [PAYLOAD]       add a message (PAYLOAD, or stdin when absent or "-"); prints its id
  claim NAME [-- CMD...]    take the next message; with CMD, run it on the message and ack or nack
  len NAME                  count ready, claimed, delayed and dead messages
  dead NAME                 list the dead letters
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
		"redrive": queueRedrive, "discard": queueDiscard, "ack": queueAck, "nack": queueAck,
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
	fs := newFlags("queue push", "NAME [PAYLOAD|-] [--priority P] [--delay D] [--idempotency-key K]\n\nAdds a message and prints its id. The payload is PAYLOAD, or stdin when it is\nabsent or \"-\". Lower priorities are claimed first; FIFO within one.", stderr)
	var q queueFlags
	q.register(fs)
	prio := fs.Int("priority", 0, "priority: lower is claimed first")
	delay := fs.Duration("delay", 0, "claimable only after this long")
	idem := fs.String("idempotency-key", "", "do nothing (and print the first id) if a message with this key is still queued")
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
	ctx, cancel := q.timeout()
	defer cancel()
	id, err := qu.Enqueue(ctx, payload, opts...)
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
other status nacks it (claimable again after --nack-delay; after
--max-attempts claims it goes to the dead letters). If the claim is lost,
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
	nackDelay := fs.Duration("nack-delay", 0, "when CMD fails, the message is claimable again after this long")
	fs.IntVar(&q.maxAttempts, "max-attempts", 0, "dead-letter a message after this many claims without an ack (0: never)")
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
	settle := func(ack bool) error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if ack {
			return m.Ack(ctx)
		}
		return m.Nack(ctx, *nackDelay)
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
	ID       string    `json:"id"`
	Attempts int       `json:"attempts"`
	Enqueued time.Time `json:"enqueued"`
	payloadJSON
}

func queueDead(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue dead", "NAME [-o text|json]\n\nLists the dead letters, one per line: ID, attempts, enqueue time, payload\n(quoted, cut at 200 bytes). With -o json, one JSON array of objects: id,\nattempts, enqueued, payload (when UTF-8) and payload_base64, whole.", stderr)
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
			out = append(out, deadJSON{ID: d.ID, Attempts: d.Attempts, Enqueued: d.Enqueued.UTC(), payloadJSON: newPayloadJSON(d.Payload)})
		}
		return writeJSON(stdout, stderr, out)
	}
	for _, d := range dls {
		p := d.Payload
		more := ""
		if len(p) > 200 {
			p, more = p[:200], "..."
		}
		fmt.Fprintf(stdout, "%s\t%d\t%s\t%q%s\n", d.ID, d.Attempts, d.Enqueued.UTC().Format(time.RFC3339), p, more)
	}
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
