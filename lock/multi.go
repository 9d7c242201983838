package lock

import (
	"context"
	"fmt"
	"slices"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxMultiNames is the most names one MultiMutex takes: its Txn puts one
// key and reads one line per name, which for 64 names is exactly etcd's
// default limit of 128 operations per Txn (--max-txn-ops).
const MaxMultiNames = 64

// MultiMutex takes the Mutex locks of several names together. Lock puts
// one key per name in a single Txn, so all of them share one revision:
// every queue then orders any two MultiMutexes (and Mutexes) the same way,
// and no two callers can each hold what the other waits for, whatever
// order they list the names in. It excludes, and is excluded by, a Mutex
// of any of its names.
//
// A MultiMutex holds at most one lock at a time; its methods are safe for
// concurrent use.
type MultiMutex struct {
	c      *core
	spaces []keys.Space
}

// NewMulti returns a MultiMutex for names on s (duplicates are ignored).
// It does not talk to etcd; no names, more than MaxMultiNames, a bad name
// or a nil session is reported by every method (ErrInvalid).
func NewMulti(s *session.Session, names ...string) *MultiMutex {
	uniq := slices.Clone(names)
	slices.Sort(uniq)
	uniq = slices.Compact(uniq)
	m := &MultiMutex{c: newCore(s, keys.KindLock, uniq)}
	switch {
	case m.c.err != nil:
	case len(uniq) == 0:
		m.c.err = fmt.Errorf("%s: %w: no names", m.c.label, ErrInvalid)
	case len(uniq) > MaxMultiNames:
		m.c.err = fmt.Errorf("%s: %w: %d names, over the limit of %d", m.c.label, ErrInvalid, len(uniq), MaxMultiNames)
	default:
		for _, n := range uniq {
			sp, err := keys.New(s.Prefix(), keys.KindLock, n)
			if err != nil {
				m.c.err = invalid(m.c.label, err)
				break
			}
			m.spaces = append(m.spaces, sp)
		}
		if m.c.err == nil {
			m.c.guard = m.spaces[0].Part("w")
		}
	}
	return m
}

// Lock blocks until every name's lock is held. Errors are as for
// Mutex.Lock; on error nothing is held and no key is left behind.
func (m *MultiMutex) Lock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeWrite, m.c.s.NextID(), m.entries(), false)
}

// TryLock takes every name's lock only if none is held or waited for, in
// one Txn; otherwise it returns ErrLocked and takes none.
func (m *MultiMutex) TryLock(ctx context.Context) error {
	if m.c.err != nil {
		return m.c.err
	}
	return m.c.acquire(ctx, modeWrite, m.c.s.NextID(), m.entries(), true)
}

func (m *MultiMutex) entries() []entry {
	out := make([]entry, len(m.spaces))
	for i, sp := range m.spaces {
		out[i] = entry{sp: sp, part: "w", lines: []string{"w"}}
	}
	return out
}

// Unlock releases every name's lock in one Txn; ErrNotHeld if nothing is
// held, ErrLost (wrapped) if any of them was lost before.
func (m *MultiMutex) Unlock(ctx context.Context) error { return m.c.release(ctx, modeAny) }

// Token returns the fencing token shared by every name's lock (see
// Mutex.Token), or 0.
func (m *MultiMutex) Token() int64 { return m.c.token() }

// Done returns a channel closed when any of the locks is lost, or all are
// released; closed already when nothing is held.
func (m *MultiMutex) Done() <-chan struct{} { return m.c.done() }

// IsOwner returns one comparison per name that together hold only while
// this MultiMutex holds every lock: cli.Txn(ctx).If(m.IsOwner()...).
func (m *MultiMutex) IsOwner() []clientv3.Cmp { return m.c.owner() }

// Names returns the names locked, sorted and without duplicates.
func (m *MultiMutex) Names() []string { return slices.Clone(m.c.names) }
