// Package hold is the one lifecycle of a key a holder or waiter owns: a
// lock's place in line, a candidate, a semaphore request, a double-barrier
// participant, a queue claim. Every primitive decides only who may hold
// (first in line, fits the capacity, the round is full, the message is
// next); everything else about its key is here, written once:
//
//   - Create puts the key as owned: on the session's lease, unique to
//     this acquisition (the session's id and a sequence number), in one
//     Txn with the primitive's own compares, ops and reads, fenced against
//     a late copy of itself (see the lease package's fence), with
//     top-level compares and ops only (etcd before 3.5.26 and 3.6.9 does
//     not check permissions on nested Txn ops). A transient failure is
//     retried; one whose outcome is unknown marks the hold ambiguous.
//   - Grant confirms the grant against the session before the primitive
//     reports it: an answer delayed past the lease's trustworthy deadline
//     is never a grant.
//   - Done closes on loss or release, and tells them apart: a key that
//     goes while its owner releases it is the owner's release, never a
//     loss. A loss is reported at once, then its cause refined (a key gone
//     with its lease is the session's end: session.ErrExpired).
//   - Release is retry-tolerant (a retry whose earlier attempt landed is a
//     clean release), makes no request after a known loss, and returns the
//     primitive's own sentinels.
//   - Abandon retires a hold that was not granted, or whose outcome is
//     unknown, deleting its keys (with the primitive's undo ops) now or,
//     while etcd is unreachable, in the background until it can; when a
//     create may still be in flight it moves the session's fence in the
//     same Txn, so nothing the hold sent can bring a key back.
//   - A lock-delay (Config.Delay, granted through Admit) makes the next
//     grant after a hold ended without its owner letting it go wait a
//     delay timed by etcd: each hold keeps a mark beside its key, deleted
//     by its owner in the same request as the key, so a dead mark (one
//     whose key went with its lease) is the evidence of an unclean loss,
//     seen by the successor's mirror with no read on the clean path, and
//     by any later holder however long after (see delay.go).
//   - Named holds are for keys the primitive names itself, one holder at
//     a time (a group member's id, a shard's owner key): the key's
//     absence is the grant, and Create, Release and Abandon touch the key
//     only while it is the hold's own (Config.Named).
//
// # Safety
//
// A Hold's keys are unique to it, so no late, retried or repeated request
// of one acquisition can touch another's, even on one shared session; a
// named hold's key is shared with its predecessors and successors, so
// each of its requests is fenced on the key being its own. A
// hold is reported held only between a successful Grant and the first of
// its release or loss, and a loss closes Done before anything else is
// done about it. A Hold is safe for concurrent use.
package hold
