package lock

import (
	"context"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Mutex is a distributed mutual-exclusion lock on one name, held through
// a session. Waiters are served in the order they asked (FIFO by etcd
// create revision), and each waits only for the one ahead of it.
//
// A Mutex holds at most one lock at a time; Lock while it holds or waits
// returns ErrHeld. Two Mutexes exclude each other even on one session, so
// goroutines that need the lock each use their own Mutex. Its methods are
// safe for concurrent use.
type Mutex struct {
	c  *core
	sp keys.Space
}

// NewMutex returns a Mutex for name on s (see WithLockDelay for its
// option). It does not talk to etcd. A bad name, a bad option or a nil
// session is reported by every method, as an error wrapping ErrInvalid.
func NewMutex(s *session.Session, name string, opts ...Option) *Mutex {
	m := &Mutex{c: newCore(s, keys.KindLock, []string{name})}
	if m.c.err == nil {
		sp, err := keys.New(s.Prefix(), keys.KindLock, name)
		if err != nil {
			m.c.err = invalid(m.c.label, err)
		}
		m.sp = sp
		m.c.guard = sp.Part("w")
		m.c.apply(opts)
	}
	return m
}

// Lock blocks until the lock is held or ctx ends. Uncontended, it is one
// Txn; contended, the wait costs no RPC of its own beyond the process's
// shared watch of the line, and the handoff is the holder's delete and one
// watch event. A waiter returns at once with an error when its session
// ends (wrapping session.ErrExpired or session.ErrClosed) or when its key
// is deleted (ErrLost, and session.ErrExpired too when the key went with
// the session's lease). If Lock returns an error, the Mutex holds nothing
// and its key is gone from etcd, even when ctx was cancelled. A lock lost
// while held no longer counts as held: Lock may be called again.
func (m *Mutex) Lock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeWrite, m.c.nextID(), m.entries(), false)
}

// TryLock takes the lock only if no one holds it or waits for it: one
// Txn, plus one delete of its key when it finds the lock taken, so it
// leaves nothing behind. Otherwise it returns ErrLocked.
func (m *Mutex) TryLock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeWrite, m.c.nextID(), m.entries(), true)
}

func (m *Mutex) entries() []entry {
	return []entry{{sp: m.sp, part: "w", lines: []string{"w"}}}
}

// Unlock releases the lock with one delete of the Mutex's own key, which
// no other holder can ever share, so a late or repeated Unlock never
// releases someone else's lock. It returns ErrNotHeld when nothing is
// held, and an error wrapping ErrLost when the lock had been lost before
// Unlock: at once, without a request, when the loss is already known. If
// it fails for another reason (ctx ended, etcd unreachable), the Mutex
// still holds the lock and Unlock can be retried; a retry whose earlier
// attempt did go through returns nil.
func (m *Mutex) Unlock(ctx context.Context) error { return m.c.release(ctx, modeAny) }

// Token returns the fencing token of the held lock: the create revision
// of its key, strictly increasing across successive holders of one name.
// Pass it to any system that should reject writes from an older holder.
// It is 0 when nothing is held, including after the lock was lost.
func (m *Mutex) Token() int64 { return m.c.token() }

// Done returns a channel closed when the held lock is lost (its session
// ended or its key was deleted) or released. It is closed already when
// nothing is held. The first call on an uncontended lock starts a watch.
func (m *Mutex) Done() <-chan struct{} { return m.c.done() }

// IsOwner returns a comparison that holds only while this Mutex holds the
// lock, to guard a Txn of your own: cli.Txn(ctx).If(m.IsOwner()).Then(...).
// When nothing is held it never holds.
func (m *Mutex) IsOwner() clientv3.Cmp { return m.c.owner()[0] }

// Key returns the etcd key of the current or last hold ("" before the
// first Lock), for logs and for tools that pass it on (coord lock sets
// COORD_KEY to it).
func (m *Mutex) Key() string { return m.c.key() }
