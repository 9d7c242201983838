package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/metrics"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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
	root        string
	maxAttempts int
	maxPayload  int
	metrics     *metrics.Metrics
	err         error
}

// WithPrefix sets the root prefix of the queue's keys (default "coord/").
// Producers and consumers of one queue must use the same root; Claim
// refuses a session of another root (ErrInvalid), so a consumer set up
// with session.WithPrefix and a Queue without it fails loudly instead of
// silently working on another queue.
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// WithMaxAttempts moves a message to the dead-letter list once it has
// been claimed n times without an Ack: at its n-th Nack, or when it would
// be claimed an (n+1)-th time after a consumer died holding it. 0, the
// default, retries forever.
func WithMaxAttempts(n int) Option {
	return func(o *options) {
		if n < 0 {
			o.err = fmt.Errorf("%w: max attempts %d is negative", ErrInvalid, n)
		}
		o.maxAttempts = n
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

// WithMetrics makes Enqueue count into m. Consumer-side events (claims,
// acks, dead letters) go to the consumer's session metrics.
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

	mu     sync.Mutex
	lastNS int64 // keeps ids strictly increasing within this process
	spread int   // how many head messages claims spread over (1: strict order)
	views  []*view
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
	return q
}

// indexEnd is the end of the range every consumer follows: every part of
// the queue but the payloads (v/ sorts after every index part), so no
// watch ever carries a payload.
func (q *Queue) indexEnd() string { return q.sp.Part(partPayload) }

// Name returns the queue's name.
func (q *Queue) Name() string { return q.sp.Name() }

// EnqueueOption configures one Enqueue.
type EnqueueOption func(*enqueueOptions)

type enqueueOptions struct {
	prio  int
	delay time.Duration
	idem  string
	err   error
}

// WithPriority sets the message's priority: lower values are claimed
// first, FIFO within a priority. The default is 0; negatives are allowed.
func WithPriority(p int) EnqueueOption { return func(o *enqueueOptions) { o.prio = p } }

// WithDelay makes the message claimable only after d. A negative d is an
// error.
func WithDelay(d time.Duration) EnqueueOption {
	return func(o *enqueueOptions) {
		if d < 0 {
			o.err = fmt.Errorf("%w: delay %v is negative", ErrInvalid, d)
		}
		o.delay = d
	}
}

// WithIdempotencyKey makes Enqueue a no-op that returns the first
// message's id when a message with the same key is still in the queue
// (ready, delayed, claimed or dead), so a producer can retry an Enqueue
// whose outcome it does not know. The key is forgotten when that message
// is acked or discarded.
func WithIdempotencyKey(key string) EnqueueOption {
	return func(o *enqueueOptions) {
		if err := keys.ValidateName(key); err != nil {
			o.err = fmt.Errorf("%w: idempotency key: %w", ErrInvalid, err)
		}
		o.idem = key
	}
}

// newID returns a message id: the enqueue time in 16 hex digits (strictly
// increasing within this Queue value, so one producer is FIFO) and 8
// random bytes, so producers never collide.
func (q *Queue) newID() (string, int64) {
	q.mu.Lock()
	ns := max(time.Now().UnixNano(), q.lastNS+1)
	q.lastNS = ns
	q.mu.Unlock()
	var r [8]byte
	rand.Read(r[:])
	return encodeTime(ns) + "-" + hex.EncodeToString(r[:]), ns
}

// Enqueue adds payload to the queue and returns the message's id. It is
// one Txn (its index entry and its payload, written together). Without an
// idempotency key,
// an Enqueue that fails with a network error may or may not have added
// the message. It returns ErrTooLarge for a payload over the limit and
// ErrInvalid for bad options, in both cases without writing anything.
func (q *Queue) Enqueue(ctx context.Context, payload []byte, opts ...EnqueueOption) (string, error) {
	if q.err != nil {
		return "", q.err
	}
	var o enqueueOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return "", fmt.Errorf("queue %q: %w", q.sp.Name(), o.err)
	}
	if len(payload) > q.opts.maxPayload {
		return "", fmt.Errorf("queue %q: %w: %d bytes, over the %d-byte limit", q.sp.Name(), ErrTooLarge, len(payload), q.opts.maxPayload)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id, ns := q.newID()
	rec := record{prio: o.prio, enqueued: ns, idem: o.idem}
	key := q.sp.Key(partReady, encodePriority(o.prio)+"-"+id)
	if o.delay > 0 {
		key = q.sp.Key(partTimed, encodeTime(ns+int64(o.delay))+"-"+encodePriority(o.prio)+"-"+id)
	}
	puts := []clientv3.Op{clientv3.OpPut(key, string(rec.encode())), clientv3.OpPut(q.sp.Key(partPayload, id), string(payload))}
	if o.idem == "" {
		if _, err := q.cli.Txn(ctx).Then(puts...).Commit(); err != nil {
			return "", q.wrapPutErr(err)
		}
		q.opts.metrics.QueueEvent(q.sp.Name(), metrics.QueueEnqueued)
		return id, nil
	}
	ik := q.sp.Key(partIdem, keys.Escape(o.idem))
	resp, err := q.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ik), "=", 0)).
		Then(append(puts, clientv3.OpPut(ik, id))...).
		Else(clientv3.OpGet(ik)).
		Commit()
	if err != nil {
		return "", q.wrapPutErr(err)
	}
	if !resp.Succeeded {
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			return string(kvs[0].Value), nil
		}
		// The record vanished between the compare and the get: cannot
		// happen inside one Txn, but never return an empty id.
		return "", fmt.Errorf("queue %q: idempotency record %q vanished", q.sp.Name(), o.idem)
	}
	q.opts.metrics.QueueEvent(q.sp.Name(), metrics.QueueEnqueued)
	return id, nil
}

func (q *Queue) wrapPutErr(err error) error {
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge) {
		return fmt.Errorf("queue %q: %w: %w", q.sp.Name(), ErrTooLarge, err)
	}
	return fmt.Errorf("queue %q: enqueue: %w", q.sp.Name(), err)
}

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
