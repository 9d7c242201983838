package lock

import (
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/hold"
)

// Option configures a Mutex or an RWMutex (NewMutex, NewRWMutex, Do).
type Option func(*options)

type options struct {
	delay time.Duration
}

// WithLockDelay turns on a lock-delay of d: after a holder of the name
// lost the lock without unlocking it (its session's lease expired or was
// revoked, Session.Close included, or its key was deleted by someone
// else), the next Lock to be granted waits d before it returns, so that
// the old holder, which may still be running (paused, partitioned) or
// have writes in flight, has time to stop or land before anyone else
// writes. Chubby and Consul call this lock-delay; it protects resources
// that cannot check a fencing token (see package fence for those that
// can).
//
// A clean Unlock costs nothing: the next holder is granted at once, with
// the same number of requests as without a lock-delay. The delay is
// timed by etcd (a lease of d whose expiry the successor waits for),
// never by a client's clock; etcd counts leases in whole seconds and has
// a minimum lease TTL (2 s with its default timing), so d must be whole
// seconds from 1s to 1h, and the wait is at least d, counted from when a
// contender first saw the loss. A waiter in line that vanished without
// leaving (its process crashed) counts as a loss too: a successor cannot
// tell it from a holder. TryLock returns ErrLocked while a delay is
// pending. Give every Mutex of a name the same lock-delay: one without
// neither leaves the evidence of its loss nor waits for another's.
func WithLockDelay(d time.Duration) Option { return func(o *options) { o.delay = d } }

// apply sets the options on c, or records why they are invalid.
func (c *core) apply(opts []Option) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := hold.CheckDelay(o.delay); err != nil {
		if c.err == nil {
			c.err = fmt.Errorf("%s: %w: %w", c.label, ErrInvalid, err)
		}
		return
	}
	c.cfg.Delay = o.delay
}
