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

	q         *Queue
	s         *lease.Session
	h         *hold.Hold
	rec       record // as of this claim
	from      string // the index entry it was claimed from
	claimedAt time.Time

	mu      sync.Mutex
	settled bool // a settle returned an answer: success or the loss
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
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.settled {
		return nil, fmt.Errorf("queue %q: message %s: %w", m.q.sp.Name(), m.ID, ErrFinished)
	}
	rs, err := m.h.Release(ctx, append([]clientv3.Op{clientv3.OpDelete(m.inflightKey())}, ops...)...)
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
	ops := []clientv3.Op{clientv3.OpDelete(m.q.sp.Key(partPayload, m.ID))}
	if m.rec.idem != "" {
		ops = append(ops, clientv3.OpDelete(m.q.sp.Key(partIdem, keys.Escape(m.rec.idem))))
	}
	now := time.Now().UnixNano()
	n := len(ops)
	rs, err := m.settle(ctx, append(ops, m.q.headOps(now)...)...)
	if err != nil {
		return err
	}
	if len(rs) > n+1 {
		m.q.keep(m.q.parseView(m.h.ReleasedAt(), now, rs[n+1:]))
	}
	name, mt := m.q.sp.Name(), m.s.Metrics()
	mt.QueueEvent(name, metrics.QueueAcked)
	mt.ClaimToAck(name, time.Since(m.claimedAt))
	return nil
}

// Nack gives the message back: it becomes claimable again after delay (at
// once for 0), behind the messages of its priority that are ready by
// then. A message nacked for the MaxAttempts-th time goes to the
// dead-letter list instead. Nack moves only the small index entry: the
// payload is not rewritten. It returns ErrClaimLost, ErrFinished, or
// ErrInvalid for a negative delay.
func (m *Message) Nack(ctx context.Context, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("queue %q: %w: delay %v is negative", m.q.sp.Name(), ErrInvalid, delay)
	}
	if max := m.q.opts.maxAttempts; max > 0 && m.Attempt >= max {
		return m.bury(ctx, m.Attempt, fmt.Sprintf("max attempts: nacked %d times", m.Attempt), "")
	}
	due := time.Now().Add(delay).UnixNano()
	nk := m.q.sp.Key(partTimed, encodeTime(due)+"-"+encodePriority(m.Priority)+"-"+m.ID)
	if _, err := m.settle(ctx, clientv3.OpPut(nk, string(m.rec.encode()))); err != nil {
		return err
	}
	m.s.Metrics().QueueEvent(m.q.sp.Name(), metrics.QueueNacked)
	m.s.Logger().Debug("coord queue message nacked", "kind", keys.KindQueue, "name", m.q.sp.Name(), "id", m.ID, "attempt", m.Attempt, "delay", delay)
	return nil
}

// bury moves the message to the dead-letter list, fenced on the claim,
// with why it died. Its payload stays where it is.
func (m *Message) bury(ctx context.Context, attempts int, reason, lastErr string) error {
	rec := m.rec
	rec.attempts = attempts
	rec.reason, rec.lastErr = reason, lastErr
	if _, err := m.settle(ctx, clientv3.OpPut(m.q.sp.Key(partDead, m.ID), string(rec.encode()))); err != nil {
		return err
	}
	m.s.Metrics().QueueEvent(m.q.sp.Name(), metrics.QueueDeadLettered)
	m.s.Logger().Warn("coord queue message dead-lettered", "kind", keys.KindQueue, "name", m.q.sp.Name(), "id", m.ID,
		"attempts", attempts, "reason", reason, "error", lastErr)
	return nil
}
