package ratelimit

import "time"

// Clock is the time a Limiter goes by: when each epoch starts and ends,
// and the timers its waits use. Every process that shares a limiter
// reads its own clock, so the clocks must agree within the skew the
// limiter was made with (WithClockSkew). The default is the system clock;
// tests and simulations give their own (WithClock).
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine once d has passed, unless
	// stop is called first; stop reports whether it stopped the call.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
