package semaphore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/wait"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errReleased ends a released permit's hold, closing Done.
var errReleased = errors.New("semaphore: permit released")

// closed is the Done channel of a permit released before Done was asked for.
var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Permit is n permits of a semaphore, held until Release or until they are
// lost with the session. It is safe for concurrent use.
type Permit struct {
	sem      *Semaphore
	key      string
	token    int64
	n        int64
	acquired time.Time

	mu       sync.Mutex
	released bool       // Release succeeded or is under way
	ended    bool       // the end (release or loss) has been recorded
	hold     *wait.Hold // started by the first Done
}

func (s *Semaphore) granted(key string, rev, n int64, start time.Time) *Permit {
	m := s.s.Metrics()
	m.Acquired(kind, s.name, time.Since(start))
	m.Permits(s.name, n)
	s.s.Logger().Debug("coord semaphore acquired", "name", s.name, "n", n, "token", rev, "wait", time.Since(start))
	return &Permit{sem: s, key: key, token: rev, n: n, acquired: time.Now()}
}

// Token returns the permit's fencing token: the create revision of its
// key, strictly increasing across the permits of one semaphore. Pass it to
// the resource the permit guards, which can reject writes carrying an
// older token than one it has seen.
func (p *Permit) Token() int64 { return p.token }

// Weight returns the number of permits held.
func (p *Permit) Weight() int64 { return p.n }

// Key returns the etcd key that holds the permit.
func (p *Permit) Key() string { return p.key }

// IsOwner returns a comparison that holds while the permit does, to guard
// your own Txns: clientv3.Compare on the create revision of its key.
func (p *Permit) IsOwner() clientv3.Cmp { return isOwner(p.key, p.token) }

// Done returns a channel closed when the permit is released or lost: its
// key was deleted by someone else, or its session ended. The first call
// starts a watch (one RPC); a permit whose Done is never asked for costs
// none.
func (p *Permit) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.released {
		return closed
	}
	if p.hold == nil {
		p.hold = wait.NewHold(p.sem.s.Client(), p.key, p.token, p.sem.s)
		go p.watchLoss(p.hold)
	}
	return p.hold.Done()
}

// Err returns nil while the permit is held (as far as Done can tell),
// else why it ended: ErrLost, possibly wrapping the session's error, or
// ErrNotHeld once released.
func (p *Permit) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.released:
		return ErrNotHeld
	case p.hold == nil:
		return nil
	}
	select {
	case <-p.hold.Done():
		return p.sem.lost(p.key)
	default:
		return nil
	}
}

func (p *Permit) watchLoss(h *wait.Hold) {
	<-h.Done()
	if !p.end(true, false) {
		return
	}
	p.sem.s.Logger().Warn("coord semaphore permit lost", "name", p.sem.name, "n", p.n, "token", p.token, "err", h.Err())
}

// end records the end of the hold once, by release or by loss. A loss
// seen by Done while Release is under way is Release's to record.
func (p *Permit) end(lost, byRelease bool) bool {
	p.mu.Lock()
	if p.ended || (!byRelease && p.released) {
		p.mu.Unlock()
		return false
	}
	p.ended = true
	p.mu.Unlock()
	m := p.sem.s.Metrics()
	m.Permits(p.sem.name, -p.n)
	m.Released(kind, p.sem.name, time.Since(p.acquired), lost)
	return true
}

// Release returns the permits to the semaphore with one Delete of the
// permit's key (the key's name is used once ever, so the delete cannot
// hit anyone else's). It returns ErrNotHeld if the permit was already
// released, and ErrLost if its key was already gone. On any other error
// the permit may still be held: call Release again, or close the session.
func (p *Permit) Release(ctx context.Context) error {
	p.mu.Lock()
	if p.released {
		p.mu.Unlock()
		return p.sem.wrap(ErrNotHeld)
	}
	p.released = true
	p.mu.Unlock()
	resp, err := p.sem.s.Client().Delete(ctx, p.key)
	if err != nil {
		p.mu.Lock()
		p.released = false
		p.mu.Unlock()
		return p.sem.wrap(err)
	}
	p.mu.Lock()
	h := p.hold
	p.mu.Unlock()
	if h != nil {
		h.Release(errReleased)
	}
	if resp.Deleted == 0 {
		p.end(true, true)
		return p.sem.wrap(fmt.Errorf("release of %d permits: %w", p.n, p.sem.lost(p.key)))
	}
	p.end(false, true)
	p.sem.s.Logger().Debug("coord semaphore released", "name", p.sem.name, "n", p.n, "token", p.token)
	return nil
}
