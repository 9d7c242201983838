// Package semaphore is golang.org/x/sync/semaphore for a fleet: a
// weighted, strictly FIFO counting semaphore whose permits live in etcd
// and are bound to their holders' sessions.
//
// A request for n permits is granted only when it and every request made
// before it fit in the capacity together, so a large request is never
// starved by a stream of small ones. Acquiring free permits costs one Txn
// and releasing one Delete, however many requests are in the line. The
// waiters of a process share one mirror of the semaphore (one watch, and
// one read when the process opens it), which keeps the weight ahead of
// every request in a tree, so a waiter does no RPC at all for the releases
// that do not let it proceed, a release grants the waiters it lets in with
// no read, and a waiter's memory does not grow with the line.
//
// The capacity is stored with the semaphore. The first user stores the
// capacity it was made with; a user made with a different one gets
// ErrCapacityMismatch, since two deployments disagreeing about a limit is
// a bug to surface, not to paper over. SetCapacity changes the capacity
// for everyone: from then on every user follows the stored value,
// whatever it was made with.
//
// # Safety
//
// Each request is a key on the session's lease. When the session ends
// (Close, a revoked or expired lease) its permits return to the
// semaphore: at once on Close or revocation, after the TTL on a crash.
// Permit.Done closes when the permit is lost that way, or when its key is
// deleted by anyone; the session's Done closes before the server can
// expire the lease, so a holder learns of the loss before anyone else is
// granted its permits, barring process pauses. For those, Permit.Token is
// a fencing token (the create revision of the permit's key, strictly
// increasing per semaphore) and Permit.IsOwner a guard for your own Txns.
//
// When SetCapacity lowers the capacity, holders keep what they hold (the
// stored capacity records up to which request they were granted), so the
// permits in use may exceed the new capacity until they are released; no
// new request is granted until they fit. A waiter whose request no longer
// fits in the new capacity at all fails with ErrTooLarge instead of
// waiting forever.
//
// Available, Holders and State read the line in one request and apply the
// same rule Acquire grants by; they show who holds what with which token,
// readable in etcdctl too (etcdctl get --prefix coord/semaphore/).
//
// A Semaphore and a Permit are safe for concurrent use.
package semaphore
