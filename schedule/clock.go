package schedule

import "time"

// Clock is where a schedule reads the time and waits for it. The default
// is the system clock; tests inject their own, to run many replicas with
// skewed clocks through hours of ticks without sleeping.
//
// After returns a channel that receives the time once the clock has
// advanced by d (at once for d <= 0). A schedule may stop listening on
// one before it fires, so an implementation must not block sending.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// systemClock is the real clock. Since Go 1.23 a timer that is never
// received from is collected, so After leaks nothing.
type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
