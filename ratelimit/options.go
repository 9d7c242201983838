package ratelimit

import (
	"fmt"
	"time"
)

// Option configures New.
type Option func(*options)

type options struct {
	clock   Clock
	skew    time.Duration
	horizon time.Duration
	err     error
}

// DefaultSkew is the clock skew a Limiter allows for when WithClockSkew is
// not given: what NTP keeps servers of one network within.
const DefaultSkew = 10 * time.Millisecond

// WithClock sets the clock the limiter reads (default: the system clock).
// Every process sharing the limiter must read clocks that agree within the
// skew.
func WithClock(c Clock) Option {
	return func(o *options) {
		if c == nil {
			o.err = fmt.Errorf("%w: nil clock", ErrInvalid)
		}
		o.clock = c
	}
}

// WithClockSkew sets how far apart the clocks of the processes sharing
// the limiter may be (default DefaultSkew). The hard cap holds as long as
// no two of them differ by more: each epoch's last d is never granted
// in, so that the epochs of two processes cannot overlap. 0 is right for
// processes on one host. It is stored with the limit, and every user of
// the limiter must give the same; a skew over half the interval is an
// error.
func WithClockSkew(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.err = fmt.Errorf("%w: clock skew %v, want 0 or more", ErrInvalid, d)
		}
		o.skew = d
	}
}

// WithHorizon sets how far ahead a process may hold permits (default: one
// interval, and never more than 64 epochs). A process may hold no more
// than its share of the horizon (the horizon's permits over the number of
// processes reserving), so a longer horizon means fewer reservations but
// a longer wait, under overload, for a process that comes late.
func WithHorizon(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.err = fmt.Errorf("%w: horizon %v, want a positive one", ErrInvalid, d)
		}
		o.horizon = d
	}
}
