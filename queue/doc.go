// Package queue is an at-least-once work queue on etcd, with priorities,
// delays, Ack/Nack and a dead-letter list. Producers Enqueue without a
// session; consumers Claim under a session.Session, and a message claimed
// by a consumer that dies becomes claimable again.
//
// Unlike etcd's recipe Queue, whose Dequeue deletes the item before the
// worker runs (so a crash loses it), a message here is removed only by an
// Ack from the consumer that holds its claim.
//
// # Workers
//
// Consume runs a pool of handlers (WithWorkers) over the queue: each
// handler's ctx ends when its claim is lost; nil acks, an error nacks with
// the queue's backoff (RetryAfter sets its own delay, Permanent
// dead-letters at once), a panic is a failed attempt with its text kept;
// WithClaimTimeout gives a stuck handler's message to another worker
// (Message.Extend for long jobs); a shutdown claims nothing more, gives
// unstarted messages back at once and waits WithDrainTimeout for running
// ones. WithBatch claims and acks up to n messages a Txn (ClaimN, AckAll),
// so etcd's work grows with batches, not messages.
//
// The settings every consumer applies (Config: max attempts, backoff,
// dead-letter retention) are stored with the queue: a Queue created with
// other settings gets ErrConfigMismatch, SetConfig changes them for all,
// and `coord queue config` shows them. Dead letters say why they died
// (Reason, LastError, the times of their claims); Redrive resets their
// attempts.
//
// # Unique and idempotent enqueues
//
// WithIdempotencyKey is for retrying one request: a second Enqueue with
// the key returns the first message's id with no error while that message
// is in the queue. Unique refuses a second job with ErrDuplicate while an
// equal one is pending or in flight, UniqueFor for a period whatever
// became of it; both are decided in the enqueue Txn, so of producers
// racing with one key exactly one enqueues. EnqueueBatch enqueues up to
// one etcd request of messages in one Txn, all or none.
//
// # Order
//
// Lower priorities are claimed first; within a priority, messages go in
// the order they became ready: their enqueue time (strictly increasing
// per Queue value, so one producer is exactly FIFO; producers on several
// machines are ordered by their clocks), or for delayed and nacked
// messages the time their delay ends. One consumer sees that order
// exactly. Consumers that race for the head spread their claims over the
// first few ready messages, so N consumers do not all fight for one key;
// order is then approximate, as it is anyway once work runs in parallel.
// Delays use the producer's and consumers' clocks.
//
// # Cost
//
// Enqueue is one Txn (the message's small index entry and its payload).
// A claim moves the message's index entry out of the ready range, so the
// head of the queue is always claimable: Claim is one Txn when the
// consumer's previous Ack already read the head (that Txn does), else one
// read and one Txn, however many messages are in flight, and it never
// reads a payload it does not return. Ack is one Txn; Nack moves only the
// index entry. The consumers of a process that find the queue empty wait
// on the process's one watch of the queue's index (payloads are never
// watched); a new message wakes one of them, handing it the message, so
// it claims without a read, and the others sleep on.
//
// etcd keeps deleted keys in its index until the history is compacted,
// and visits them in any read or compare over their range: a queue's
// consumed entries pile up in front of its head. So the queue keeps two
// floors, small keys at or below its first ready entry and its first
// delayed one, which claims raise now and then and which anything that
// writes an entry below them lowers (an Enqueue, a Nack) or deletes (a
// message put back); head reads and claim compares begin there, so what a
// claim costs the server does not grow with the messages consumed since
// the last compaction. etcd also counts every
// key of a range it reads, whatever the limit (etcd's recipe Queue pays
// for its whole backlog on every Dequeue), so a process's reads of the
// head end at a horizon a few hundred ready messages in, placed again
// from what those reads show when the messages before it were claimed
// (only a process's first read covers the whole ready range): the
// server's work per claim stays flat as the backlog grows, as its RPCs
// and bytes do. The look for the next delayed message goes a minute ahead; an idle
// consumer looks again each minute.
//
// # Safety
//
// Message payloads are never attached to a lease, so nothing but an Ack
// (or Discard of a dead letter) deletes one. A claim is a key on the
// consumer's session lease: when the session ends, by Close, crash or
// partition, the claim goes and the message is claimable again with its
// Attempt increased. Delivery is therefore at least once: a message is
// processed twice only when a claim was lost while its work ran.
// Ack and Nack are single Txns fenced on the claim's create revision, so
// a consumer whose claim was lost gets ErrClaimLost and changes nothing;
// Message.Token is that revision, to fence side effects elsewhere, and
// Message.Done closes when the claim ends. A Queue and a Message are safe
// for concurrent use.
package queue
