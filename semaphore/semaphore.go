package semaphore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInvalid is wrapped by the errors for bad arguments: a nil session, a
// name that is empty, over 512 bytes or not UTF-8, a capacity below 1, a
// request for fewer than 1 permit.
var ErrInvalid = errors.New("semaphore: invalid argument")

// ErrTooLarge is returned by Acquire and TryAcquire for a request larger
// than the whole capacity, and by a waiting Acquire when SetCapacity
// shrinks the capacity below its request: such a request could never be
// granted.
var ErrTooLarge = errors.New("semaphore: request exceeds capacity")

// ErrCapacityMismatch is returned when the semaphore stored in etcd was
// created with a capacity other than the one given to New, and SetCapacity
// has not changed it since.
var ErrCapacityMismatch = errors.New("semaphore: capacity mismatch")

// ErrNoPermits is returned by TryAcquire when the request cannot be
// granted now: too few permits are free, or earlier requests are waiting.
var ErrNoPermits = errors.New("semaphore: not enough permits")

// ErrNotHeld is returned by Release for a permit already released.
var ErrNotHeld = errors.New("semaphore: permit not held")

// ErrLost is returned by Release, and by a waiting Acquire, when the
// permit's or request's key was deleted by someone else or went with its
// session's lease. When the session ended, the error wraps the session's
// error (session.ErrExpired or session.ErrClosed) too.
var ErrLost = errors.New("semaphore: permit lost")

const (
	kind = keys.KindSemaphore
	// maxRetries bounds the loops that retry when the capacity or the line
	// changed under them.
	maxRetries = 16
	// window is how many requests of the line an Acquire's Txn reads (in
	// key order, so etcd honours the limit) when the process does not
	// follow the semaphore already: a line no longer than that is judged
	// from the Txn itself, a longer one from the process's mirror.
	window = 16
)

// Semaphore is a weighted, FIFO semaphore named name, shared by every
// process that uses the same name under the same root prefix. It is safe
// for concurrent use; many Acquires may be outstanding on one Semaphore.
type Semaphore struct {
	s    *lease.Session
	hub  *watch.Hub
	sp   keys.Space
	name string
	ctor int64
	err  error // a bad argument to New, returned by every method
	cfg  hold.Config

	mu       sync.Mutex
	stored   string // the capacity value believed to be in etcd
	capacity int64
}

// New returns the semaphore name with the given capacity on session s
// (see WithLockDelay for its option). Nothing is written until the first
// Acquire; bad arguments are reported by every method (wrapping
// ErrInvalid), never by a panic.
func New(s *session.Session, name string, capacity int64, opts ...Option) *Semaphore {
	sem := &Semaphore{name: name, ctor: capacity, capacity: capacity, stored: strconv.FormatInt(capacity, 10)}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case s == nil:
		sem.err = fmt.Errorf("%w: nil session", ErrInvalid)
	case capacity < 1:
		sem.err = fmt.Errorf("%w: capacity %d, want at least 1", ErrInvalid, capacity)
	case o.check() != nil:
		sem.err = o.check()
	default:
		sem.s = lease.Of(s)
		sp, err := keys.New(sem.s.Root(), kind, name)
		if err != nil {
			sem.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		sem.sp = sp
		sem.hub = watch.For(sem.s.Client())
		sem.cfg = hold.Config{
			Kind: kind, Names: []string{name}, Label: fmt.Sprintf("semaphore %.64q", name), Noun: "permit",
			Errors:  hold.Errors{Lost: ErrLost, NotHeld: ErrNotHeld},
			OnGrant: func(h *hold.Hold) { sem.s.Metrics().Permits(name, h.Record().Weight()) },
			OnEnd:   func(h *hold.Hold, _ bool) { sem.s.Metrics().Permits(name, -h.Record().Weight()) },
			Delay:   o.delay,
		}
	}
	return sem
}

// Name returns the semaphore's name.
func (s *Semaphore) Name() string { return s.name }

func (s *Semaphore) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", s.cfg.Label, err)
}

// usable reports why the semaphore cannot be used now, before any RPC.
func (s *Semaphore) usable(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	if err := s.s.Err(); err != nil {
		return s.wrap(err)
	}
	return s.wrap(ctx.Err())
}

func checkWeight(n int64) error {
	if n < 1 {
		return fmt.Errorf("%w: request for %d permits, want at least 1", ErrInvalid, n)
	}
	return nil
}

func (s *Semaphore) capKey() string  { return s.sp.Single("capacity") }
func (s *Semaphore) linePfx() string { return s.sp.Part("q") }

// belief returns the stored capacity value this Semaphore last saw.
func (s *Semaphore) belief() (string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stored, s.capacity
}

// weight reads a line key's value; a key that is not ours to parse
// counts as one permit, so it can delay others but never let too many in.
func weight(v []byte) int64 {
	rec, _ := keys.DecodeRecord(v)
	return rec.Weight()
}

// refresh reads the stored capacity, for a request larger than the one we
// believe in: the stored one may have grown.
func (s *Semaphore) refresh(ctx context.Context) (int64, error) {
	resp, err := s.s.Client().Get(ctx, s.capKey())
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return s.ctor, nil
	}
	c, err := s.adopt(resp.Kvs[0].Value)
	return c.n, err
}

// fitsCapacity returns ErrTooLarge for a request that can never be
// granted, reading the stored capacity only when the believed one is too
// small.
func (s *Semaphore) fitsCapacity(ctx context.Context, n int64) error {
	if _, c := s.belief(); n <= c {
		return nil
	}
	c, err := s.refresh(ctx)
	if err != nil {
		return err
	}
	if n > c {
		return fmt.Errorf("%w: request for %d permits, capacity is %d", ErrTooLarge, n, c)
	}
	return nil
}

// isOwner is the guard a permit's key still exists as created.
func isOwner(key string, token int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), "=", token)
}
