// Package barrier makes groups of processes wait for each other through
// etcd: a Barrier is a gate that some hold shut and anyone may open, a
// DoubleBarrier lets a fixed number of participants start together and
// finish together, round after round, and a Latch opens once it has been
// counted down a given number of times.
//
// Every wait takes a context and ends in one of three ways: the event it
// waits for really happened, the context ended, or (for DoubleBarrier) the
// participant's session ended. A wait never reports an event because its
// watch broke: after a compaction, a reconnect or a member failover it
// re-reads the state from etcd and goes on waiting.
//
// # Safety
//
// Barrier offers two holds. Hold writes a key with no lease: the gate stays
// shut until someone calls Release, even if the holder crashes, which is
// what a deploy gate opened by an operator wants. HoldWith ties the hold to
// a session.Session: the gate also opens once every session that holds it
// has ended, so a crashed holder cannot shut it forever. Release always
// opens the gate, whoever holds it, and is recorded durably, so a waiter
// that was waiting when Release ran returns nil even if the gate is shut
// again before it reads.
//
// DoubleBarrier participants are session-bound: a participant whose session
// ends is removed with its lease. One that dies before its round is full
// leaves the others waiting for a replacement (or for their contexts); one
// that dies after its round is full counts as having left, so Leave does
// not wait for it. Enter fails with ErrFull rather than silently joining a
// round that already has count participants.
//
// A Latch holds its count in etcd. CountDown with WithID is idempotent per
// id, in one Txn, so a retried CountDown (say after a timeout whose request
// did reach etcd) is never counted twice; CountDown without an id is not.
//
// Barrier, DoubleBarrier and Latch values are safe for concurrent use,
// except that one DoubleBarrier value is one participant: call Enter and
// Leave on it from one goroutine at a time.
package barrier
