// Package lock provides distributed locks on etcd, held through a
// session.Session: Mutex, RWMutex, MultiMutex (several names taken
// atomically) and Do, which runs a function while holding a lock.
//
// A lock is a key in a line of keys ordered by etcd create revision:
// taking it puts the key and reads the first two keys of the line (in key
// order, which etcd answers without reading the rest) in one Txn, so an
// uncontended Lock is one Txn and Unlock one DeleteRange. A waiter waits
// on its process's one shared mirror of the line, where "am I first?" is
// answered locally: a handoff costs the holder's delete and one watch
// event, with no read, whatever the number of waiters. Every process with
// waiters follows the line's events (two per handoff).
//
// # Safety
//
// Each Lock puts a key no other call ever uses (the session's lease plus
// a sequence number), so two Mutexes on one session exclude each other,
// and a late, retried or repeated Unlock can delete only its own key.
// Names are escaped, so "a" and "a/b" are independent locks.
//
// A held lock is lost when its session ends (the lease expired, was
// revoked, or the session was closed) or when its key is deleted by
// anyone. Done then closes, before the server can grant the lock to
// anyone else when the loss is the session's (see the session package),
// and Do cancels its function's context. A process can still be paused
// past that moment, so protect the resource itself: guard etcd writes
// with IsOwner, and pass Token (the key's create revision, strictly
// increasing across holders of a name) to any other system as a fencing
// token so it can reject an older holder's late writes.
//
// A waiter whose context ends deletes its key before returning, with a
// timeout of its own, so it blocks no one; one whose session ends or whose
// key is deleted returns at once with an error, and never reports the
// lock as taken unless its key was alive when it became first in line.
//
// Mutex, RWMutex and MultiMutex values are safe for concurrent use, but
// each holds at most one lock at a time.
package lock
