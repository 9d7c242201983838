package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/metrics"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Message is a claimed message. Exactly one of Ack, Nack or Dead settles
// it; all are fenced on the claim, so none acts on a message that another
// consumer has claimed since this claim was lost. A Message is safe for
// concurrent use.
type Message struct {
	// ID is the id Enqueue returned; it stays the same across
	// redeliveries, Nacks and dead-lettering.
	ID string
	// Payload is the message body as enqueued.
	Payload []byte
	// Attempt counts the claims of this message, this one included:
	// 1 on first delivery, more after Nacks or consumers that died.
	Attempt int
	// Priority is the priority it was enqueued with.
	Priority int
	// Enqueued is when the producer enqueued it (the producer's clock).
	Enqueued time.Time
	// Claimed is when this consumer's claim of it landed (this process's
	// clock): a handler under Consume that starts later waited that long
	// for a worker.
	Claimed time.Time

	q      *Queue
	s      *lease.Session
	h      *hold.Hold
	rec    record // as of this claim
	before record // as it was in line, before this claim
	from   string // the index entry it was claimed from

	mu      sync.Mutex
	settled bool      // a settle returned an answer: success or the loss
	dl      *deadline // the claim timeout under Consume, or nil
}

// Token returns the claim's fencing token: the create revision of the
// claim key, higher for every later claim of any message of the queue.
// Pass it with side effects so that a consumer whose claim was lost
// cannot overwrite the work of the one that took over.
func (m *Message) Token() int64 { return m.h.Rev() }

// IsOwner returns a comparison that holds while this claim does, to guard
// your own etcd Txns with.
func (m *Message) IsOwner() clientv3.Cmp { return m.h.IsOwner()[0] }

// Done returns a channel closed when the claim ends: the message was
// settled (acked, nacked, dead-lettered), its claim key was deleted, or
// the consumer's session ended. It follows the process's one watch of the
// queue's index, which idle consumers share.
func (m *Message) Done() <-chan struct{} { return m.h.Done() }

// Err returns nil while the claim holds (as far as Done can tell), else
// an error wrapping ErrClaimLost once it was lost.
func (m *Message) Err() error { return m.h.Lost() }

func (m *Message) inflightKey() string { return m.q.sp.Key(partInflight, m.ID) }

// settle ends the claim in one Txn fenced on it, with ops. ErrClaimLost
// when the claim is gone (at once, without a request, once the loss is
// known); ErrFinished when the message was settled already. A network
// error leaves the message unsettled, so the call can be retried, and a
// retry of an attempt that was in fact applied reports success.
func (m *Message) settle(ctx context.Context, ops ...clientv3.Op) ([]*pb.ResponseOp, error) {
	return m.settleIf(ctx, nil, ops...)
}

// settleIf is settle on the queue's own compares too: when they fail
// (the claim still held), it returns hold.ErrCond and the claim stays.
func (m *Message) settleIf(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) ([]*pb.ResponseOp, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.settled {
		return nil, fmt.Errorf("queue %q: message %s: %w", m.q.sp.Name(), m.ID, ErrFinished)
	}
	ops = append([]clientv3.Op{clientv3.OpDelete(m.inflightKey())}, ops...)
	var rs []*pb.ResponseOp
	var err error
	if len(cmps) == 0 {
		rs, err = m.h.Release(ctx, ops...)
	} else {
		rs, err = m.h.ReleaseIf(ctx, true, cmps, ops...)
	}
	if err == nil || errors.Is(err, ErrClaimLost) || errors.Is(err, ErrFinished) {
		m.settled = true
	}
	return rs, err
}

// Ack removes the message for good (its index entry, payload and
// idempotency record), in one Txn that succeeds only while this claim
// holds. The same Txn reads the head of the queue for this consumer's next
// Claim, which then needs no read of its own. It returns ErrClaimLost if
// the claim is gone (the session ended: the message may be with another
// consumer, which will process it again), and ErrFinished if it was
// already settled.
func (m *Message) Ack(ctx context.Context) error {
	ops := m.ackOps()[1:] // settle deletes the in-flight entry itself
	hp := m.q.headPlan(time.Now().UnixNano())
	n := len(ops)
	rs, err := m.settle(ctx, append(ops, m.q.headOps(hp)...)...)
	if err != nil {
		return err
	}
	if len(rs) == n+1+headLen {
		m.q.keep(m.q.parseView(m.h.ReleasedAt(), hp, rs[n+1:]))
	}
	m.acked()
	return nil
}

// NackOption configures one Nack.
type NackOption func(*nackOptions)

type nackOptions struct{ err error }

// WithError records why the attempt failed: its text is kept with the
// message and shown in the dead letter if the message dies.
func WithError(err error) NackOption { return func(o *nackOptions) { o.err = err } }

// ackOps are the ops of m's Ack besides its claim's release.
func (m *Message) ackOps() []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpDelete(m.inflightKey()), clientv3.OpDelete(m.q.sp.Key(partPayload, m.ID))}
	if m.rec.idem != "" {
		ops = append(ops, clientv3.OpDelete(m.q.sp.Key(partIdem, keys.Escape(m.rec.idem))))
	}
	return append(ops, m.rec.freeUnique(m.q)...)
}

// freeUnique frees the message's Unique key (not a UniqueFor's, which
// lives out its period): it is the message's own, since it is created
// only when absent.
func (r record) freeUnique(q *Queue) []clientv3.Op {
	if r.uniq == "" || r.uniqLeased {
		return nil
	}
	return []clientv3.Op{clientv3.OpDelete(q.uniqueKey(r.uniq))}
}

// AckAll acks messages claimed under one session in one Txn, fenced on
// every claim. When a claim among them was lost, it acks the others one
// by one and returns, per message, what its Ack returned (nil for
// success); errs is nil when every Ack succeeded.
func (q *Queue) AckAll(ctx context.Context, ms []*Message) (errs []error) {
	if len(ms) == 0 {
		return nil
	}
	var hs []*hold.Hold
	var ops []clientv3.Op
	var todo []*Message
	for _, m := range ms {
		m.mu.Lock()
		settled := m.settled
		m.mu.Unlock()
		if settled || m.s != ms[0].s {
			todo = nil
			break
		}
		hs = append(hs, m.h)
		ops = append(ops, m.ackOps()...)
		todo = append(todo, m)
	}
	if len(todo) == len(ms) {
		// The same Txn reads the head for the next Claim, as Ack does.
		hp := q.headPlan(time.Now().UnixNano())
		n := len(ops)
		if rs, err := hold.ReleaseAll(ctx, hs, append(ops, q.headOps(hp)...)...); err == nil {
			if len(rs) == n+headLen {
				q.keep(q.parseView(ms[0].h.ReleasedAt(), hp, rs[n:]))
			}
			for _, m := range ms {
				m.mu.Lock()
				m.settled = true
				m.mu.Unlock()
				m.acked()
			}
			return nil
		}
	}
	errs = make([]error, len(ms))
	failed := false
	for i, m := range ms {
		errs[i] = m.Ack(ctx)
		failed = failed || errs[i] != nil
	}
	if !failed {
		return nil
	}
	return errs
}

// acked counts an Ack.
func (m *Message) acked() {
	name, mt := m.q.sp.Name(), m.s.Metrics()
	mt.QueueEvent(name, metrics.QueueAcked)
	mt.ClaimToAck(name, time.Since(m.Claimed))
}

// Nack gives the message back: it becomes claimable again after delay (at
// once for 0), behind the messages of its priority that are ready by
// then. A message nacked at its last allowed attempt (Config.MaxAttempts)
// goes to the dead-letter list instead. Nack moves only the small index
// entry: the payload is not rewritten. It returns ErrClaimLost,
// ErrFinished, or ErrInvalid for a negative delay.
func (m *Message) Nack(ctx context.Context, delay time.Duration, opts ...NackOption) error {
	if delay < 0 {
		return fmt.Errorf("queue %q: %w: delay %v is negative", m.q.sp.Name(), ErrInvalid, delay)
	}
	var o nackOptions
	for _, opt := range opts {
		opt(&o)
	}
	lastErr := ""
	if o.err != nil {
		lastErr = o.err.Error()
	}
	cfg, err := m.q.config(ctx)
	if err != nil {
		return err
	}
	if max := cfg.MaxAttempts; max > 0 && m.Attempt >= max {
		return m.bury(ctx, m.Attempt, ReasonMaxAttempts, lastErr)
	}
	rec := m.rec
	rec.lastErr = lastErr
	due := time.Now().Add(delay).UnixNano()
	nk := m.q.sp.Key(partTimed, encodeTime(due)+"-"+encodePriority(m.Priority)+"-"+m.ID)
	// Fenced on the delayed range's floor being at or below the entry, as
	// an Enqueue is (a floor raised past it by a process whose clock is
	// ahead would hide it): lowered first when it is not.
	var low floors
	low[ft] = nk
	err = m.q.belowFloors(ctx, "nack", low, func(fcs []clientv3.Cmp) (bool, *floors, error) {
		_, err := m.settleIf(ctx, fcs, clientv3.OpPut(nk, string(rec.encode())))
		if errors.Is(err, hold.ErrCond) {
			return true, nil, nil
		}
		return false, nil, err
	})
	if err != nil {
		return err
	}
	m.s.Metrics().QueueEvent(m.q.sp.Name(), metrics.QueueNacked)
	m.s.Logger().Debug("coord queue message nacked", "kind", keys.KindQueue, "name", m.q.sp.Name(), "id", m.ID, "attempt", m.Attempt, "delay", delay)
	return nil
}

// giveBack returns a message whose handling never started to its place
// in line, as it was before this claim (the attempt is not counted).
func (m *Message) giveBack(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	_, err := m.settle(ctx, m.q.putBackOps("", m.from, m.before)[1:]...) // settle deletes the in-flight entry itself
	return err
}

// Dead moves the message to the dead-letter list now, whatever its
// attempts, with reason (what a DeadLetter's Reason will say). It returns
// ErrClaimLost or ErrFinished as Ack does.
func (m *Message) Dead(ctx context.Context, reason string) error {
	if reason == "" {
		reason = ReasonDead
	}
	return m.bury(ctx, m.Attempt, reason, "")
}

// bury moves the message to the dead-letter list, fenced on the claim,
// with why it died. Its payload stays where it is.
func (m *Message) bury(ctx context.Context, attempts int, reason, lastErr string) error {
	rec := m.rec
	rec.attempts = attempts
	rec.reason, rec.lastErr, rec.died = reason, lastErr, time.Now().UnixNano()
	ops := append([]clientv3.Op{clientv3.OpPut(m.q.sp.Key(partDead, m.ID), string(rec.encode()))}, rec.freeUnique(m.q)...)
	if _, err := m.settle(ctx, ops...); err != nil {
		return err
	}
	m.s.Metrics().QueueEvent(m.q.sp.Name(), metrics.QueueDeadLettered)
	m.s.Logger().Warn("coord queue message dead-lettered", "kind", keys.KindQueue, "name", m.q.sp.Name(), "id", m.ID,
		"attempts", attempts, "reason", reason, "error", lastErr)
	return nil
}
