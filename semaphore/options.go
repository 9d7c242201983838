package semaphore

import (
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/hold"
)

// Option configures a Semaphore (New).
type Option func(*options)

type options struct {
	delay time.Duration
}

// WithLockDelay turns on a lock-delay of d: after a permit of the
// semaphore was lost without being released (its session's lease expired
// or was revoked, Session.Close included, or its key was deleted by
// someone else), the next Acquire to be granted waits d before it
// returns, so that the old holder, which may still be running or have
// writes in flight, has time to stop or land first. A clean Release costs
// nothing: the next request is granted at once, with the same number of
// requests as without.
//
// The delay is timed by etcd (a lease of d whose expiry the successor
// waits for), never by a client's clock, so d must be whole seconds from
// 1s to 1h, and the wait is at least d (etcd's minimum lease TTL, 2 s
// with its default timing, is a floor), counted from when a contender
// first saw the loss. A request in line that vanished (its process
// crashed) counts as a loss too. TryAcquire returns ErrNoPermits while a
// delay is pending. Give every Semaphore of a name the same lock-delay.
func WithLockDelay(d time.Duration) Option { return func(o *options) { o.delay = d } }

func (o options) check() error {
	if err := hold.CheckDelay(o.delay); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
