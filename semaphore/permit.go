package semaphore

import (
	"context"

	"github.com/coord-go/coord/internal/hold"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Permit is n permits of a semaphore, held until Release or until they are
// lost with the session. It is safe for concurrent use.
type Permit struct {
	sem *Semaphore
	h   *hold.Hold
	n   int64
}

// Token returns the permit's fencing token: the create revision of its
// key, strictly increasing across the permits of one semaphore. Pass it to
// the resource the permit guards, which can reject writes carrying an
// older token than one it has seen.
func (p *Permit) Token() int64 { return p.h.Rev() }

// Weight returns the number of permits held.
func (p *Permit) Weight() int64 { return p.n }

// Key returns the etcd key that holds the permit.
func (p *Permit) Key() string { return p.h.Key() }

// IsOwner returns a comparison that holds while the permit does, to guard
// your own Txns: clientv3.Compare on the create revision of its key.
func (p *Permit) IsOwner() clientv3.Cmp { return isOwner(p.h.Key(), p.h.Rev()) }

// Done returns a channel closed when the permit is released or lost: its
// key was deleted by someone else, or its session ended. It follows the
// process's shared mirror of the semaphore, so it costs no RPC while the
// process already follows it (one watch and one read otherwise).
func (p *Permit) Done() <-chan struct{} { return p.h.Done() }

// Err returns nil while the permit is held (as far as Done can tell),
// else why it ended: ErrLost, possibly wrapping the session's error, or
// ErrNotHeld once released.
func (p *Permit) Err() error {
	if err := p.h.Lost(); err != nil {
		return err
	}
	if !p.h.Held() {
		select {
		case <-p.h.Done():
			return p.sem.wrap(ErrNotHeld)
		default:
		}
	}
	return nil
}

// Release returns the permits to the semaphore with one Delete of the
// permit's key (the key's name is used once ever, so the delete cannot
// hit anyone else's). It returns ErrNotHeld if the permit was already
// released, and ErrLost if it had been lost (at once, without a request,
// when the loss is already known). On any other error the permit may
// still be held: call Release again; a retry whose earlier attempt went
// through returns nil, never ErrLost.
func (p *Permit) Release(ctx context.Context) error {
	_, err := p.h.Release(ctx)
	return err
}
