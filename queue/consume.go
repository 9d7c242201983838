package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Handler processes one message. Its ctx is cancelled when the claim is
// lost (the session ended, the claim timed out) and when Consume's drain
// timeout passes. Returning nil acks the message; an error nacks it with
// the queue's backoff (or the delay of RetryAfter), or dead-letters it at
// its last allowed attempt or when it is Permanent. A handler that
// settled the message itself (Ack, Nack, Dead, or through Extend's
// message) may return anything: the message is already settled.
type Handler func(ctx context.Context, m *Message) error

// ConsumeOption configures Consume.
type ConsumeOption func(*consumeOptions)

type consumeOptions struct {
	workers int
	batch   int
	drain   time.Duration
	// claimTimeout bounds a handler's claim (0: none).
	claimTimeout time.Duration
	err          error
}

// DefaultDrainTimeout is how long Consume waits, once its ctx ends, for
// the handlers still running before it gives their messages back.
const DefaultDrainTimeout = 10 * time.Second

// MaxBatch is the most messages one claim Txn takes (see WithBatch): each
// takes four ops, and etcd allows 128 per Txn by default.
const MaxBatch = 32

// WithWorkers runs n handlers at once (default 1). n < 1 is ErrInvalid.
func WithWorkers(n int) ConsumeOption {
	return func(o *consumeOptions) {
		if n < 1 {
			o.err = fmt.Errorf("%w: %d workers", ErrInvalid, n)
		}
		o.workers = n
	}
}

// WithBatch makes Consume claim up to n ready messages in one Txn and ack
// finished ones together, up to n a Txn, so that etcd's work grows with
// batches rather than messages. With batches the pool also claims ahead:
// up to n messages beyond those its workers are running, so the next
// batch is claimed while the last one is handled and no worker waits on
// a claim Txn. A message claimed ahead waits for a free worker at most as
// long as the handlers before it run (and is given back at once, its
// attempt not counted, if Consume stops first), so keep batches near the
// worker count, and leave them at 1 for long jobs that other processes
// should get a share of. Default 1; at most MaxBatch.
func WithBatch(n int) ConsumeOption {
	return func(o *consumeOptions) {
		if n < 1 || n > MaxBatch {
			o.err = fmt.Errorf("%w: batch of %d (1..%d)", ErrInvalid, n, MaxBatch)
		}
		o.batch = n
	}
}

// WithDrainTimeout sets how long Consume waits for running handlers once
// its ctx ends (default DefaultDrainTimeout): after it, their contexts are
// cancelled and their messages given back at once, claimable by another
// consumer. A negative d is ErrInvalid.
func WithDrainTimeout(d time.Duration) ConsumeOption {
	return func(o *consumeOptions) {
		if d < 0 {
			o.err = fmt.Errorf("%w: drain timeout %v is negative", ErrInvalid, d)
		}
		o.drain = d
	}
}

// retryAfter is an error that says when to try again.
type retryAfter struct {
	d   time.Duration
	err error
}

func (r retryAfter) Error() string { return r.err.Error() }
func (r retryAfter) Unwrap() error { return r.err }

// RetryAfter wraps err so that Consume nacks the message with delay d
// instead of the queue's backoff.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry")
	}
	return retryAfter{d: max(d, 0), err: err}
}

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps err so that Consume dead-letters the message at once
// (ReasonPermanent), with err's text, whatever attempts it has left.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return permanent{err}
}

// Consume runs handler on the queue's messages, on up to WithWorkers of
// them at once, claiming under s, until ctx ends. Each message is acked
// when handler returns nil, and otherwise nacked with the queue's
// backoff (or dead-lettered, see Handler). A panic in handler is
// recovered and counts as a failed attempt, its text recorded with the
// message (ReasonPanic if it was the last attempt).
//
// When ctx ends, Consume claims nothing more, gives back at once the
// messages it claimed and did not start (to their place in line, their
// attempt not counted), and waits for the running handlers; after the
// drain timeout it cancels their contexts and gives their messages back,
// claimable by another consumer at once rather than after the session's
// TTL. It then returns ctx's error. It returns earlier, after the same
// drain, when s ends (with its error: session.ErrExpired or ErrClosed),
// and at once with ErrInvalid for bad options, a nil handler or session.
func (q *Queue) Consume(ctx context.Context, s *session.Session, handler Handler, opts ...ConsumeOption) error {
	if q.err != nil {
		return q.err
	}
	o := consumeOptions{workers: 1, batch: 1, drain: DefaultDrainTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.err != nil:
		return fmt.Errorf("queue %q: %w", q.sp.Name(), o.err)
	case handler == nil:
		return fmt.Errorf("queue %q: %w: nil handler", q.sp.Name(), ErrInvalid)
	case s == nil:
		return fmt.Errorf("queue %q: %w: nil session", q.sp.Name(), ErrInvalid)
	}
	l := lease.Of(s)
	if _, err := q.config(ctx); err != nil {
		return err
	}
	// With batches, claims run ahead of the workers by up to one batch: a
	// batch is claimed while the last one is being handled, so the pool
	// never idles on a claim Txn.
	window := o.workers
	if o.batch > 1 {
		window += o.batch
	}
	c := &consumer{q: q, s: s, l: l, h: handler, o: o,
		work:      make(chan *Message, window),
		slots:     make(chan struct{}, window),
		claimsOff: make(chan struct{}),
		stopped:   make(chan struct{}),
		running:   map[*Message]struct{}{},
		parent:    trace.SpanContextFromContext(ctx),
	}
	for range window {
		c.slots <- struct{}{}
	}
	var ackers sync.WaitGroup
	if o.batch > 1 {
		// Two ackers, so one batch of acks is sent while the next gathers.
		c.acks = make(chan *Message, window)
		ackers.Go(c.acker)
		ackers.Go(c.acker)
	}
	// Claims stop with ctx or the session; handlers outlive both, until
	// the drain is over.
	cctx, stopClaims := context.WithCancel(ctx)
	defer stopClaims()
	go func() {
		select {
		case <-l.Done():
			stopClaims()
		case <-cctx.Done():
		}
	}()
	var workers sync.WaitGroup
	for range o.workers {
		workers.Go(c.worker)
	}
	// Fetchers claim for free slots, a batch each at a time: enough of
	// them that the window fills with claims in flight side by side, not
	// one at a time for the whole pool.
	var fetchers sync.WaitGroup
	var fetchErr error
	var errOnce sync.Once
	for range (window + o.batch - 1) / o.batch {
		fetchers.Go(func() {
			if err := c.fetch(cctx); err != nil {
				errOnce.Do(func() { fetchErr = err })
				stopClaims()
			}
		})
	}
	fetchers.Wait()
	close(c.claimsOff) // queued messages are now given back, not run
	close(c.work)
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	timer := time.NewTimer(o.drain)
	select {
	case <-drained:
		timer.Stop()
	case <-timer.C:
		// Cancel the handlers still running and give their messages back
		// now (a handler that ignores its ctx runs on, its settle refused),
		// and the queued ones no worker was free to give back.
		close(c.stopped)
		c.mu.Lock()
		var cut []*Message
		for m := range c.running {
			cut = append(cut, m)
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, m := range cut {
			wg.Go(func() {
				m.Nack(context.Background(), 0, WithError(errors.New("the consumer shut down before the handler finished")))
			})
		}
		for m := range c.work {
			wg.Go(func() { c.giveBack(m) })
		}
		wg.Wait()
	}
	if c.acks != nil {
		c.ackMu.Lock()
		c.acksClosed = true
		close(c.acks)
		c.ackMu.Unlock()
		ackers.Wait()
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case l.Err() != nil:
		return fmt.Errorf("queue %q: %w", q.sp.Name(), l.Err())
	}
	return fetchErr
}

// consumer is one Consume call.
type consumer struct {
	q         *Queue
	s         *session.Session
	l         *lease.Session
	h         Handler
	o         consumeOptions
	work      chan *Message     // claimed, waiting for a worker
	slots     chan struct{}     // one per idle worker: the fetcher claims only what they can start
	claimsOff chan struct{}     // closed when claiming stopped
	stopped   chan struct{}     // closed when the drain timeout passed
	parent    trace.SpanContext // Consume's caller's span: the parent of handle spans

	mu      sync.Mutex
	running map[*Message]struct{} // handled now

	acks       chan *Message // to the acker, when batching
	ackMu      sync.Mutex
	acksClosed bool
}

// fetch claims messages for idle workers until ctx ends or etcd refuses.
func (c *consumer) fetch(ctx context.Context) error {
	for {
		// One idle worker at least, then as many as are idle.
		select {
		case <-c.slots:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < c.o.batch {
			select {
			case <-c.slots:
				n++
			default:
				break more
			}
		}
		ms, err := c.q.claimTraced(ctx, c.s, n)
		for range n - len(ms) {
			c.slots <- struct{}{}
		}
		if err != nil {
			if ctx.Err() != nil || c.l.Err() != nil {
				return nil
			}
			return err
		}
		for _, m := range ms {
			// Follow the claim from now on, not from its handler's start:
			// a worker checks it before starting one (see worker).
			m.h.Watch()
			c.work <- m
		}
	}
}

// worker runs the handler on claimed messages; once claiming stopped, it
// gives back the messages no handler started.
func (c *consumer) worker() {
	for m := range c.work {
		select {
		case <-c.claimsOff:
			c.giveBack(m)
			continue
		default:
		}
		// A message claimed ahead may have waited: start its handler only
		// if its claim can still be trusted now (its key not gone, its
		// session within its deadline), or a handler could start after
		// another consumer's claim of the same message was granted.
		if err := m.h.Vouch(); err != nil {
			c.l.Logger().Debug("coord queue: a claim ended before a worker was free; not handled", "kind", keys.KindQueue,
				"name", c.q.sp.Name(), "id", m.ID, "error", err)
			c.giveBack(m)
			c.slots <- struct{}{}
			continue
		}
		c.mu.Lock()
		c.running[m] = struct{}{}
		c.mu.Unlock()
		c.handle(m)
		c.mu.Lock()
		delete(c.running, m)
		c.mu.Unlock()
		c.slots <- struct{}{}
	}
}

// handle runs the handler on m and settles it by the outcome. The
// handler's ctx is not Consume's: a shutdown lets running handlers finish
// (until the drain timeout), while a lost claim cancels at once.
func (c *consumer) handle(m *Message) {
	hctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	hctx, sp := c.startHandle(hctx, m)
	var out *handled // only when traced: untraced, a handle allocates nothing more
	if sp != nil {
		out = &handled{}
	}
	go func() {
		select {
		case <-m.Done():
			cancel(fmt.Errorf("queue %q: message %s: %w", c.q.sp.Name(), m.ID, ErrClaimLost))
		case <-c.stopped:
			cancel(fmt.Errorf("queue %q: the consumer's drain timeout passed", c.q.sp.Name()))
		case <-hctx.Done():
		}
	}()
	if d := c.o.claimTimeout; d > 0 {
		m.arm(d, func() {
			timeout := fmt.Errorf("queue %q: message %s: %w after %v", c.q.sp.Name(), m.ID, ErrClaimTimeout, d)
			cancel(timeout)
			out.settled(c.settle(m, timeout, false))
		})
	}
	err, panicked := c.run(hctx, m)
	m.disarm()
	out.settled(c.settle(m, err, panicked))
	out.end(sp)
}

// handled is how a traced message's handling ended: the first settle's
// outcome (the claim timeout's settle may come before the handler's).
type handled struct {
	mu      sync.Mutex
	outcome string
	err     error
}

func (h *handled) settled(outcome string, err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.outcome == "" {
		h.outcome, h.err = outcome, err
	}
}

func (h *handled) end(sp *span.Span) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.outcome == "" {
		h.outcome = span.Settled // every settle found it settled: the handler did
	}
	sp.End(h.outcome, h.err, time.Time{})
}

// run calls the handler, turning a panic into an error.
func (c *consumer) run(ctx context.Context, m *Message) (err error, panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			err, panicked = fmt.Errorf("panic: %v\n%s", r, debug.Stack()), true
			c.l.Logger().Error("coord queue handler panicked", "kind", keys.KindQueue, "name", c.q.sp.Name(), "id", m.ID, "attempt", m.Attempt, "panic", r)
		}
	}()
	return c.h(ctx, m), false
}

// settle acks, nacks or buries m after its handler returned err, and
// says which it did (a span outcome) and, when that failed, why.
func (c *consumer) settle(m *Message, err error, panicked bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var serr error
	var perm permanent
	var retry retryAfter
	outcome := span.Nacked
	switch {
	case err == nil:
		serr, outcome = c.ack(ctx, m), span.Acked
	case errors.As(err, &perm):
		serr, outcome = m.bury(ctx, m.Attempt, ReasonPermanent, perm.err.Error()), span.DeadLettered
	default:
		cfg, cerr := c.q.config(ctx)
		if cerr != nil {
			serr = cerr
			break
		}
		if cfg.MaxAttempts > 0 && m.Attempt >= cfg.MaxAttempts {
			reason := ReasonMaxAttempts
			switch {
			case panicked:
				reason = ReasonPanic
			case errors.Is(err, ErrClaimTimeout):
				reason = ReasonTimeout
			}
			serr, outcome = m.bury(ctx, m.Attempt, reason, err.Error()), span.DeadLettered
			break
		}
		delay := cfg.Backoff.Delay(m.Attempt)
		if errors.As(err, &retry) {
			delay = retry.d
		}
		serr = m.Nack(ctx, delay, WithError(err))
	}
	c.unsettled(m, serr)
	switch {
	case serr == nil:
		return outcome, err
	case errors.Is(serr, ErrFinished):
		return "", nil // settled before: that settle's outcome stands
	case errors.Is(serr, ErrClaimLost):
		return span.Lost, serr
	}
	return span.Failed, serr
}

// unsettled logs a settle of m that failed with err (nil: it did not).
func (c *consumer) unsettled(m *Message, err error) {
	if err != nil && !errors.Is(err, ErrFinished) && !errors.Is(err, ErrClaimLost) {
		c.l.Logger().Warn("coord queue: could not settle a message; its claim ends with the session", "kind", keys.KindQueue,
			"name", c.q.sp.Name(), "id", m.ID, "error", err)
	}
}

// giveBack returns a claimed message nobody started, to its place in line
// with its attempt not counted.
func (c *consumer) giveBack(m *Message) {
	m.giveBack(context.Background())
}

// ack acks m: at once, or, when batching, by the acker with other
// workers' acks in one Txn. A worker does not wait for a batched Ack: its
// outcome changes nothing the worker does (a failed Ack leaves the message
// to be delivered again), so the worker takes its next message while the
// Ack is out, and the acker reports a failure itself.
func (c *consumer) ack(ctx context.Context, m *Message) error {
	if c.acks == nil {
		return m.Ack(ctx)
	}
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if c.acksClosed {
		return m.Ack(ctx)
	}
	c.acks <- m
	return nil
}

// acker sends the acks that workers hand it: whatever is waiting when it
// is free, up to the batch size, in one Txn. Under load acks queue while
// a Txn is out, so batches grow with the load and cost no added wait.
func (c *consumer) acker() {
	for first := range c.acks {
		batch := []*Message{first}
	more:
		for len(batch) < c.o.batch {
			select {
			case m, ok := <-c.acks:
				if !ok {
					break more
				}
				batch = append(batch, m)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		errs := c.q.AckAll(ctx, batch)
		cancel()
		for i, err := range errs {
			c.unsettled(batch[i], err)
		}
	}
}

// claimTraced is claim in a span, when s traces: "coord.queue.claim",
// from the call until it returns, with the messages' tokens and ids.
func (q *Queue) claimTraced(ctx context.Context, s *session.Session, n int) ([]*Message, error) {
	var t trace.Tracer
	if l := lease.Of(s); l != nil && q.err == nil {
		t = l.Tracer()
	}
	if t == nil {
		return q.claim(ctx, s, n)
	}
	cctx, sp := span.Start(ctx, t, "coord.queue.claim", trace.WithAttributes(
		span.Kind.String(keys.KindQueue), span.Name.String(q.sp.Name()), span.Lease.String(lease.Of(s).LeaseHex()), span.Count.Int(n)))
	ms, err := q.claim(cctx, s, n)
	if err == nil {
		tokens, ids := make([]int64, len(ms)), make([]string, len(ms))
		for i, m := range ms {
			tokens[i], ids[i] = m.Token(), m.ID
		}
		sp.Set(attribute.Int64Slice("coord.tokens", tokens), attribute.StringSlice("coord.ids", ids), attribute.Int("coord.claimed", len(ms)))
		if len(ms) == 1 {
			sp.Set(span.Token.Int64(tokens[0]), span.ID.String(ids[0]))
		}
	}
	sp.Wait(ctx, err, span.Claimed, nil)
	return ms, err
}

// startHandle starts the span of one message's handling under Consume,
// when the session traces: "coord.queue.handle", a child of Consume's
// caller's span, around the handler and its settle; the handler's ctx
// carries it, so the handler's own spans nest under it.
func (c *consumer) startHandle(ctx context.Context, m *Message) (context.Context, *span.Span) {
	t := c.l.Tracer()
	if t == nil {
		return ctx, nil
	}
	return span.Start(trace.ContextWithSpanContext(ctx, c.parent), t, "coord.queue.handle", trace.WithAttributes(
		span.Kind.String(keys.KindQueue), span.Name.String(c.q.sp.Name()), span.Lease.String(c.l.LeaseHex()),
		span.Token.Int64(m.Token()), span.ID.String(m.ID), span.Attempt.Int(m.Attempt)))
}
