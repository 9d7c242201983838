// Package inspect answers the operator's questions about coord's state in
// etcd: who holds this lock and since when, who is waiting and in what
// order, how much of this semaphore is taken, who leads and who would
// lead next, how deep is the queue. It reads the keys every primitive
// keeps under a root prefix (every held key's value records when its
// owner asked), so it needs only a client, not a session, and changes
// nothing. The `coord status` command is built on it.
//
// # Safety
//
// Everything here is a snapshot, read at one revision: by the time it is
// printed, holders may have changed. Never use it to decide who holds a
// lock; use the primitive's fencing token and IsOwner for that.
//
// # Cost
//
// List pages through the root (512 keys a read), building each primitive
// as its keys arrive; queues are counted by the server and only their
// claims read, so no payload is ever read. Add one TimeToLive per
// distinct lease (none with WithoutTTL). A root of 100,000 keys is about
// 200 reads and under 50 MB of client memory, whatever its queues hold.
package inspect
