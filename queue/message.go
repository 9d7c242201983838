package queue

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Message is a claimed message. Exactly one of Ack or Nack settles it;
// both are fenced on the claim, so neither acts on a message that another
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

	q                         *Queue
	s                         *session.Session
	rec                       record
	key, claimKey, attemptKey string
	rev                       int64
	claimedAt                 time.Time

	mu       sync.Mutex
	finished bool
	unsure   string // the settle whose Txn may or may not have applied
	hold     *wait.Hold
	closed   chan struct{} // Done after the message was settled
}

// Token returns the claim's fencing token: the create revision of the
// claim key, higher for every later claim of any message of the queue.
// Pass it with side effects so that a consumer whose claim was lost
// cannot overwrite the work of the one that took over.
func (m *Message) Token() int64 { return m.rev }

// IsOwner returns a comparison that holds while this claim does, to guard
// your own etcd Txns with.
func (m *Message) IsOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(m.claimKey), "=", m.rev)
}

// Done returns a channel closed when the claim ends: the message was
// acked or nacked, its claim key was deleted, or the consumer's session
// ended. The first call starts a watch (one RPC); consumers that never
// call Done pay nothing for it.
func (m *Message) Done() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.finished {
		if m.closed == nil {
			m.closed = make(chan struct{})
			close(m.closed)
		}
		return m.closed
	}
	if m.hold == nil {
		m.hold = wait.NewHold(m.q.cli, m.claimKey, m.rev, m.s)
	}
	return m.hold.Done()
}

// finish records that the claim ended; m.mu is held.
func (m *Message) finish(err error) {
	m.finished = true
	if m.hold != nil {
		m.hold.Release(err)
	}
	lost := err != nil
	m.s.Metrics().Released(keys.KindQueue, m.q.sp.Name(), time.Since(m.claimedAt), lost)
	if lost {
		m.s.Logger().Warn("coord queue claim lost", "queue", m.q.sp.Name(), "id", m.ID, "attempt", m.Attempt)
	}
}

// settle runs one Txn fenced on the claim. ErrClaimLost when the claim is
// gone; ErrFinished when the message was settled already. A network error
// leaves the message unsettled, so the call can be retried, and a retry
// of an attempt that was in fact applied reports success.
// With reads, the Txn also reads the head of the queue for the next Claim.
func (m *Message) settle(ctx context.Context, what string, reads []clientv3.Op, bounded bool, now int64, ops ...clientv3.Op) error {
	if m.finished {
		return fmt.Errorf("queue %q: message %s: %w", m.q.sp.Name(), m.ID, ErrFinished)
	}
	resp, err := m.q.cli.Txn(ctx).If(m.IsOwner()).Then(append(ops, reads...)...).Commit()
	if err != nil {
		m.unsure = what
		return fmt.Errorf("queue %q: %s message %s: %w", m.q.sp.Name(), what, m.ID, err)
	}
	if !resp.Succeeded && m.unsure == what && m.leaseAlive(ctx) {
		// The claim key is gone but the lease it was on lives, so only
		// this consumer's own earlier attempt, whose answer was lost,
		// can have deleted it: that attempt was applied.
		m.finish(nil)
		return nil
	}
	if !resp.Succeeded {
		err := fmt.Errorf("queue %q: %s message %s: %w", m.q.sp.Name(), what, m.ID, ErrClaimLost)
		m.finish(err)
		return err
	}
	m.finish(nil)
	if len(reads) > 0 {
		v := m.q.parseView(resp.Header.Revision, now, resp.Responses[len(ops):])
		m.q.observe(v, bounded)
		m.q.keep(v)
	}
	return nil
}

// leaseAlive asks the server whether the consumer's lease still exists.
func (m *Message) leaseAlive(ctx context.Context) bool {
	resp, err := m.q.cli.TimeToLive(ctx, m.s.Lease())
	return err == nil && resp.TTL > 0
}

// Ack removes the message for good, in one Txn that succeeds only while
// this claim holds. It returns ErrClaimLost if the claim is gone (the
// session ended: the message may be with another consumer, which will
// process it again), and ErrFinished if it was already acked or nacked.
func (m *Message) Ack(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ops := []clientv3.Op{clientv3.OpDelete(m.key), clientv3.OpDelete(m.claimKey), clientv3.OpDelete(m.attemptKey)}
	if m.rec.idem != "" {
		ops = append(ops, clientv3.OpDelete(m.q.sp.Key(partIdem, keys.Escape(m.rec.idem))))
	}
	// The same Txn reads the head of the queue for this consumer's next
	// Claim, which then needs no read of its own.
	reads, bounded, now := m.q.headOps()
	if err := m.settle(ctx, "ack", reads, bounded, now, ops...); err != nil {
		return err
	}
	name, mt := m.q.sp.Name(), m.s.Metrics()
	mt.QueueEvent(name, metrics.QueueAcked)
	mt.ClaimToAck(name, time.Since(m.claimedAt))
	return nil
}

// Nack gives the message back: it becomes claimable again after delay (at
// once for 0), behind the messages of its priority that are ready by
// then. A message nacked for the MaxAttempts-th time goes to the
// dead-letter list instead. Nack returns ErrClaimLost, ErrFinished, or
// ErrInvalid for a negative delay.
func (m *Message) Nack(ctx context.Context, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("queue %q: %w: delay %v is negative", m.q.sp.Name(), ErrInvalid, delay)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if max := m.q.opts.maxAttempts; max > 0 && m.Attempt >= max {
		return m.buryLocked(ctx, m.Attempt)
	}
	due := time.Now().Add(delay).UnixNano()
	nk := m.q.sp.Key(partTimed, encodeTime(due)+"-"+encodePriority(m.Priority)+"-"+m.ID)
	if nk == m.key {
		// A Txn may not touch one key twice; a clock that stood still
		// must not make the Nack fail.
		nk = m.q.sp.Key(partTimed, encodeTime(due+1)+"-"+encodePriority(m.Priority)+"-"+m.ID)
	}
	if err := m.settle(ctx, "nack", nil, false, 0, clientv3.OpDelete(m.key), clientv3.OpPut(nk, string(m.rec.encode())), clientv3.OpDelete(m.claimKey)); err != nil {
		return err
	}
	m.s.Metrics().QueueEvent(m.q.sp.Name(), metrics.QueueNacked)
	m.s.Logger().Debug("coord queue message nacked", "queue", m.q.sp.Name(), "id", m.ID, "attempt", m.Attempt, "delay", delay)
	return nil
}

// bury moves the message to the dead-letter list, fenced on the claim.
func (m *Message) bury(ctx context.Context, attempts int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.buryLocked(ctx, attempts)
}

func (m *Message) buryLocked(ctx context.Context, attempts int) error {
	rec := m.rec
	rec.attempts = attempts
	err := m.settle(ctx, "dead-letter", nil, false, 0,
		clientv3.OpDelete(m.key), clientv3.OpDelete(m.claimKey), clientv3.OpDelete(m.attemptKey),
		clientv3.OpPut(m.q.sp.Key(partDead, m.ID), string(rec.encode())))
	if err != nil {
		return err
	}
	m.s.Metrics().QueueEvent(m.q.sp.Name(), metrics.QueueDeadLettered)
	m.s.Logger().Warn("coord queue message dead-lettered", "queue", m.q.sp.Name(), "id", m.ID, "attempts", attempts)
	return nil
}
