package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/coord-go/coord/internal/keys"
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
		fmt.Fprintf(stderr, "coord: queue: unknown subcommand %q\n\n%s", args[0], queueHelp)
		return 2
	}
	return sub(args[1:], stdout, stderr)
}

// queueFlags are the flags every queue subcommand shares.
type queueFlags struct {
	conn        connFlags
	prefix      string
	maxAttempts int
}

func (q *queueFlags) register(fs *flag.FlagSet) {
	q.conn.register(fs)
	fs.StringVar(&q.prefix, "prefix", "coord/", "root prefix of coord's keys")
}

// open parses args, checks that there are want positional arguments
// (NAME first), and connects. On failure it returns an exit code >= 0.
func (q *queueFlags) open(fs *flag.FlagSet, args []string, stderr io.Writer, want ...string) (pos, argv []string, cli *clientv3.Client, qu *queue.Queue, code int) {
	pos, argv, code = splitArgs(fs, args)
	if code >= 0 {
		return nil, nil, nil, nil, code
	}
	if len(pos) < len(want) || len(pos) > len(want)+1 || (len(pos) == len(want)+1 && fs.Name() != "coord queue push") {
		return nil, nil, nil, nil, usageErr(fs, stderr, "%s: want %v, got %d arguments", fs.Name()[6:], want, len(pos))
	}
	if err := keys.ValidateName(pos[0]); err != nil {
		return nil, nil, nil, nil, fail(stderr, "%s: %v", fs.Name()[6:], err)
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
		return fail(stderr, "queue %q: push: %v", pos[0], err)
	}
	fmt.Fprintln(stdout, id)
	return 0
}

const claimHelp = `NAME [--wait D] [--nack-delay D] [--max-attempts N] [--ttl 15s] [--grace 10s] [-- CMD [ARGS...]]

Claims the next ready message, waiting for one (at most --wait, if set:
exit 3 when none came).

With CMD: runs CMD with the payload on its stdin and COORD_MESSAGE_ID,
COORD_ATTEMPT and COORD_TOKEN (the claim's fencing token) in its
environment, holding the claim while it runs. Exit 0 acks the message; any
other status nacks it (claimable again after --nack-delay; after
--max-attempts claims it goes to the dead letters). If the claim is lost,
CMD gets SIGTERM, then SIGKILL after --grace, and the message is delivered
again to another consumer. coord exits with CMD's status.

Without CMD: prints the message id on one line and the payload after it,
then acks the message: it is taken off the queue.`

func queueClaim(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue claim", claimHelp, stderr)
	var q queueFlags
	q.register(fs)
	ttl := fs.Duration("ttl", session.DefaultTTL, "session lease TTL: how long a crashed consumer keeps its claim")
	grace := fs.Duration("grace", defaultGrace, "time between SIGTERM and SIGKILL when the claim is lost")
	wait := fs.Duration("wait", 0, "give up (exit 3) if no message is ready within this long; 0 waits forever")
	nackDelay := fs.Duration("nack-delay", 0, "when CMD fails, the message is claimable again after this long")
	fs.IntVar(&q.maxAttempts, "max-attempts", 0, "dead-letter a message after this many claims without an ack (0: never)")
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
			return 3
		}
		return fail(stderr, "queue %q: claim: %v", name, err)
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
		fmt.Fprintln(stdout, m.ID)
		if _, err := stdout.Write(m.Payload); err != nil {
			_ = settle(false)
			return fail(stderr, "queue %q: write message %s: %v (nacked)", name, m.ID, err)
		}
		if len(m.Payload) > 0 && m.Payload[len(m.Payload)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
		if err := settle(true); err != nil {
			return fail(stderr, "queue %q: ack %s: %v", name, m.ID, err)
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
		fmt.Fprintf(stderr, "coord: queue %q: settle %s: %v\n", name, m.ID, serr)
		if res.code == 0 {
			return 1
		}
	}
	return res.code
}

func queueLen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue len", "NAME\n\nPrints the queue's counts: ready, claimed, delayed and dead messages.", stderr)
	var q queueFlags
	q.register(fs)
	pos, _, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := q.timeout()
	defer cancel()
	st, err := qu.Stats(ctx)
	if err != nil {
		return fail(stderr, "queue %q: %v", pos[0], err)
	}
	fmt.Fprintf(stdout, "ready %d\nclaimed %d\ndelayed %d\ndead %d\n", st.Ready, st.Claimed, st.Delayed, st.Dead)
	return 0
}

func queueDead(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("queue dead", "NAME\n\nLists the dead letters, one per line: ID, attempts, enqueue time, payload (quoted).", stderr)
	var q queueFlags
	q.register(fs)
	pos, _, cli, qu, code := q.open(fs, args, stderr, "NAME")
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := q.timeout()
	defer cancel()
	dls, err := qu.DeadLetters(ctx)
	if err != nil {
		return fail(stderr, "queue %q: %v", pos[0], err)
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
		return fail(stderr, "queue %q: %s %s: %v", pos[0], verb, pos[1], err)
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
