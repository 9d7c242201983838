package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/metrics"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInvalid is wrapped by the errors returned for bad arguments: a nil
// client or session, an empty, oversized or non-UTF-8 queue name or
// idempotency key, a negative delay, a bad option value.
var ErrInvalid = errors.New("queue: invalid argument")

// ErrTooLarge is returned by Enqueue when the payload does not fit in one
// etcd request (1.5 MiB by default; see WithMaxPayload).
var ErrTooLarge = errors.New("queue: payload too large")

// ErrClaimLost is returned by Ack and Nack when the claim is gone: the
// consumer's session ended (so another consumer may have the message
// now) or the message was removed by someone else.
var ErrClaimLost = errors.New("queue: claim lost")

// ErrFinished is returned by Ack and Nack on a message that was already
// acked or nacked through this Message.
var ErrFinished = errors.New("queue: message already acked or nacked")

// ErrNotFound is returned by DeadLetter, Redrive and Discard for an id
// that is not in the dead-letter list.
var ErrNotFound = errors.New("queue: no such dead letter")

const (
	// DefaultMaxPayload is the largest payload Enqueue accepts by default:
	// etcd's default request limit (1.5 MiB) less room for the key, the
	// record header and the request's own framing.
	DefaultMaxPayload = 3<<19 - 4<<10
	// window is how many messages of each part a claim looks at: the
	// head it spreads consumers over.
	window = 32
	// cleanupTimeout bounds the repairs and cleanups that run after the
	// caller's ctx is gone.
	cleanupTimeout = 5 * time.Second
)

// Option configures New.
type Option func(*options)

type options struct {
	root       string
	want       wanted
	maxPayload int
	maxTxnOps  int
	metrics    *metrics.Metrics
	err        error
}

// WithPrefix sets the root prefix of the queue's keys (default "coord/").
// Producers and consumers of one queue must use the same root; Claim
// refuses a session of another root (ErrInvalid), so a consumer set up
// with session.WithPrefix and a Queue without it fails loudly instead of
// silently working on another queue.
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// WithMaxAttempts is WithConfig for the maximum attempts alone: a message
// claimed n times without an Ack goes to the dead-letter list (0 retries
// forever). The setting is stored with the queue (see Config).
func WithMaxAttempts(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.err = fmt.Errorf("%w: max attempts %d is negative", ErrInvalid, n)
		}
		o.want.cfg.MaxAttempts, o.want.attempts = n, true
	}
}

// WithMaxPayload sets the largest payload Enqueue accepts, for a server
// started with a --max-request-bytes other than etcd's default.
func WithMaxPayload(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.err = fmt.Errorf("%w: max payload %d is negative", ErrInvalid, n)
		}
		o.maxPayload = n
	}
}

// WithMetrics makes Enqueue count into m, and m report the queue's depth
// by state (coord_queue_depth: ready, delayed, claimed, dead), read at
// scrape time with one count-only Txn at most once per
// metrics.WithDepthInterval. Consumer-side events (claims, acks, dead
// letters) go to the consumer's session metrics.
func WithMetrics(m *metrics.Metrics) Option { return func(o *options) { o.metrics = m } }

// Queue is a named at-least-once work queue. It holds no connection state
// of its own and is safe for concurrent use.
type Queue struct {
	cli  *clientv3.Client
	hub  *watch.Hub
	sp   keys.Space
	root string
	opts options
	err  error // from New, returned by every method
	cfg  hold.Config

	mu      sync.Mutex
	lastNS  int64 // keeps ids strictly increasing within this process
	checked bool  // this Queue's options were checked against the stored settings
	spread  int   // how many head messages claims spread over (1: strict order)
	views   []*view
}

// New returns the queue called name. It makes no RPC; an invalid name or
// option is reported by every method, wrapped in ErrInvalid.
func New(cli *clientv3.Client, name string, opts ...Option) *Queue {
	o := options{root: keys.DefaultRoot, maxPayload: DefaultMaxPayload}
	for _, opt := range opts {
		opt(&o)
	}
	q := &Queue{cli: cli, opts: o, spread: 1}
	switch {
	case o.err != nil:
		q.err = o.err
	case cli == nil:
		q.err = fmt.Errorf("%w: nil etcd client", ErrInvalid)
	}
	if q.err != nil {
		return q
	}
	root, err := keys.NormalizeRoot(o.root)
	if err != nil {
		q.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return q
	}
	q.root = root
	if q.sp, err = keys.New(root, keys.KindQueue, name); err != nil {
		q.err = fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	q.hub = watch.For(cli)
	q.cfg = hold.Config{Kind: keys.KindQueue, Names: []string{name}, Label: fmt.Sprintf("queue %q", name), Noun: "claim",
		Errors: hold.Errors{Lost: ErrClaimLost, NotHeld: ErrFinished}, StrictRetry: true}
	if q.err == nil {
		o.metrics.TrackQueue(q.sp.Base(), name, q.depth)
	}
	return q
}

// depth is Stats for the metrics' coord_queue_depth: one Txn of
// count-only ranges, which etcd answers from its in-memory index (no
// value is read or sent), at most once per scrape interval.
func (q *Queue) depth(ctx context.Context) (metrics.QueueDepth, error) {
	st, err := q.Stats(ctx)
	return metrics.QueueDepth{Ready: st.Ready, Delayed: st.Delayed, Claimed: st.Claimed, Dead: st.Dead}, err
}

// indexEnd is the end of the range every consumer follows: every part of
// the queue but the payloads (v/ sorts after every index part), so no
// watch ever carries a payload.
func (q *Queue) indexEnd() string { return q.sp.Part(partPayload) }

// Name returns the queue's name.
func (q *Queue) Name() string { return q.sp.Name() }

// Stats counts a queue's messages at one revision.
type Stats struct {
	Ready   int64 // claimable now
	Claimed int64 // held by a live consumer
	Delayed int64 // waiting for their delay (or a Nack's) to pass
	Dead    int64 // in the dead-letter list
}

// Len returns the number of messages in the queue that are not yet acked
// or dead: ready, claimed and delayed.
func (q *Queue) Len(ctx context.Context) (int64, error) {
	st, err := q.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.Ready + st.Claimed + st.Delayed, nil
}

// Stats counts ready, claimed, delayed and dead messages in one read.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	if q.err != nil {
		return Stats{}, q.err
	}
	now := time.Now().UnixNano()
	count := func(prefix, end string) clientv3.Op {
		return clientv3.OpGet(prefix, clientv3.WithRange(end), clientv3.WithCountOnly())
	}
	r, t, f, d := q.sp.Part(partReady), q.sp.Part(partTimed), q.sp.Part(partInflight), q.sp.Part(partDead)
	resp, err := q.cli.Txn(ctx).Then(
		count(r, keys.RangeEnd(r)),
		count(t, keys.RangeEnd(t)),
		count(t, t+encodeTime(now+1)),
		count(f, keys.RangeEnd(f)),
		count(d, keys.RangeEnd(d)),
	).Commit()
	if err != nil {
		return Stats{}, fmt.Errorf("queue %q: stats: %w", q.sp.Name(), err)
	}
	n := func(i int) int64 { return resp.Responses[i].GetResponseRange().Count }
	ready, timed, due, claimed, dead := n(0), n(1), n(2), n(3), n(4)
	// A claimed message's index entry moved to f/: every part counts
	// distinct messages.
	return Stats{Ready: ready + due, Claimed: claimed, Delayed: timed - due, Dead: dead}, nil
}
