package lock

import (
	"context"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RWMutex is a distributed reader/writer lock on one name: any number of
// readers share it, a writer holds it alone. Readers and writers queue in
// one order (etcd create revision): a reader waits only for writers that
// asked before it, a writer for everyone who asked before it. A writer is
// therefore never starved by a stream of readers, and a reader never
// jumps ahead of a waiting writer.
//
// An RWMutex holds at most one lock (read or write) at a time; each
// concurrent reader uses its own RWMutex, as with Mutex. Its names are
// separate from Mutex's: an RWMutex and a Mutex of the same name do not
// exclude each other. Its methods are safe for concurrent use.
type RWMutex struct {
	c  *core
	sp keys.Space
}

// NewRWMutex returns an RWMutex for name on s (see WithLockDelay: a
// reader that vanished delays the next grant, read or write). It does not
// talk to etcd; a bad name, a bad option or a nil session is reported by
// every method (ErrInvalid).
func NewRWMutex(s *session.Session, name string, opts ...Option) *RWMutex {
	m := &RWMutex{c: newCore(s, keys.KindRWLock, []string{name})}
	if m.c.err == nil {
		sp, err := keys.New(s.Prefix(), keys.KindRWLock, name)
		if err != nil {
			m.c.err = invalid(m.c.label, err)
		}
		m.sp = sp
		m.c.guard = sp.Part("w")
		m.c.apply(opts)
	}
	return m
}

// RLock blocks until a read lock is held: no writer that asked earlier
// holds or waits. Errors are as for Mutex.Lock.
func (m *RWMutex) RLock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeRead, m.c.nextID(), m.reader(), false)
}

// TryRLock takes a read lock only if no writer holds or waits, in one
// Txn; otherwise it returns ErrLocked.
func (m *RWMutex) TryRLock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeRead, m.c.nextID(), m.reader(), true)
}

// RUnlock releases a read lock; ErrNotHeld if none is held.
func (m *RWMutex) RUnlock(ctx context.Context) error { return m.c.release(ctx, modeRead) }

// Lock blocks until the write lock is held: no one who asked earlier,
// reader or writer, holds or waits. Errors are as for Mutex.Lock.
func (m *RWMutex) Lock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeWrite, m.c.nextID(), m.writer(), false)
}

// TryLock takes the write lock only if no one holds or waits, in one
// Txn; otherwise it returns ErrLocked.
func (m *RWMutex) TryLock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeWrite, m.c.nextID(), m.writer(), true)
}

// Unlock releases the write lock; ErrNotHeld if it is not held.
func (m *RWMutex) Unlock(ctx context.Context) error { return m.c.release(ctx, modeWrite) }

// Readers queue in part "r", writers in part "w". Create revisions are
// global, so comparing across the two parts gives one FIFO order.
func (m *RWMutex) reader() []entry {
	return []entry{{sp: m.sp, part: "r", lines: []string{"w"}}}
}

func (m *RWMutex) writer() []entry {
	return []entry{{sp: m.sp, part: "w", lines: []string{"w", "r"}}}
}

// Token returns the fencing token of the held lock, read or write (see
// Mutex.Token), or 0.
func (m *RWMutex) Token() int64 { return m.c.token() }

// Done returns a channel closed when the held lock is lost or released;
// closed already when nothing is held.
func (m *RWMutex) Done() <-chan struct{} { return m.c.done() }

// IsOwner returns a comparison that holds only while this RWMutex holds
// its lock (read or write).
func (m *RWMutex) IsOwner() clientv3.Cmp { return m.c.owner()[0] }
