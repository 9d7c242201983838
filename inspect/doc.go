// Package inspect answers the operator's questions about coord's state in
// etcd: who holds this lock, since when (locks record when they asked;
// other kinds do not yet), who is waiting and in what order, how much of
// this semaphore is taken, who leads, how deep is the queue. It reads the
// keys every primitive keeps under a root prefix, so it needs only a
// client, not a session, and changes nothing. The `coord status` command
// is built on it.
//
// # Safety
//
// Everything here is a snapshot: by the time it is printed, holders may
// have changed. Never use it to decide who holds a lock; use the
// primitive's fencing token and IsOwner for that. Listing costs one range
// read of the prefix plus one TimeToLive per distinct lease.
package inspect
