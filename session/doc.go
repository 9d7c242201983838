// Package session keeps one etcd lease alive and says, conservatively,
// when it can no longer be trusted. Every coord primitive (lock, election,
// semaphore, barrier participant, queue claim) attaches its keys to a
// Session's lease, so all of them vanish together when the process closes
// the session, crashes, or is cut off for longer than the TTL.
//
// # Safety
//
// Done closes, and Err turns non-nil, at the earliest of: Close; the
// lease's revocation by anyone (seen within milliseconds through a watch);
// the server reporting the lease gone; the etcd client being closed; or
// the local deadline passing. The deadline is the send time of the last
// acknowledged keepalive plus the granted TTL, less a margin of a tenth of
// the TTL (between 100 ms and 1 s). Because the server starts the TTL when
// it receives a keepalive, never before it was sent, Done closes before
// the server can expire the lease and hand what it held to someone else.
// A process paused (GC, SIGSTOP, VM migration) cannot notice anything
// while paused; fencing tokens cover that case.
//
// Renewals go every quarter TTL on one long-lived keepalive stream (on an
// auth-enabled cluster every new stream authenticates again, so a stream
// per renewal could outlast its own renewal on a busy server); a stream
// that stops answering is left behind for a new one, which gRPC may place
// on another member.
//
// # Traces
//
// WithTracerProvider makes every primitive on the session trace through
// the given OpenTelemetry provider: a span for each wait (Lock, Acquire,
// Campaign, a queue claim), one for each hold (from the grant to the
// release or the loss: "coord.lock.hold", "coord.election.lead"...), and
// one per message a Consume handler runs, with the primitive's kind, name,
// fencing token and outcome as attributes (coord.kind, coord.name,
// coord.token, coord.outcome) and an Error status on failures and losses.
// No global provider is ever read; without the option nothing is traced.
//
// A Session is safe for concurrent use. Close it when done; it revokes the
// lease with its own timeout, even when the caller's context is gone.
package session
