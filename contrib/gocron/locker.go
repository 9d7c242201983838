package gocron

import (
	"context"
	"sync"

	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	gocron "github.com/go-co-op/gocron/v2"
)

// Locker is a gocron.Locker on coord locks: a run takes the lock named
// after its job (gocron passes the job's name; give jobs names with
// gocron.WithName), without waiting, and gocron skips the run when it is
// taken elsewhere. See the package doc for what it does not promise.
type Locker struct {
	s    *session.Session
	mu   sync.Mutex
	held map[string]*lock.Mutex
}

var _ gocron.Locker = (*Locker)(nil)

// NewLocker returns a Locker whose locks live on s. Every replica's
// scheduler gets its own, on its own session.
func NewLocker(s *session.Session) *Locker {
	return &Locker{s: s, held: map[string]*lock.Mutex{}}
}

// Lock takes the lock of job key without waiting. It returns an error
// wrapping lock.ErrLocked when another replica (or another run on this
// one) holds it, which makes gocron skip the run; the returned Lock is the
// *lock.Mutex itself, which gocron unlocks after the run.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	m := lock.NewMutex(l.s, key)
	if err := m.TryLock(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.held[key] = m
	l.mu.Unlock()
	return m, nil
}

// Held returns the lock last taken for job key, so that the run can fence
// its writes with its Token or IsOwner and stop when its Done closes; nil
// before the first run. A job that runs on several replicas' schedulers
// reads its own replica's Locker.
func (l *Locker) Held(key string) *lock.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[key]
}
