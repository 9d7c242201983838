package schedule

import "time"

// JitterOf is the delay s gives the tick at t: for tests that check a
// replica waits it out, and no longer.
func JitterOf(s *Schedule, t time.Time) time.Duration { return s.jitter(t) }

// WithNap shortens the longest a replica sleeps between looks at its
// clock, so a test of a wall-clock step need not wait maxNap.
func WithNap(d time.Duration) Option { return func(o *options) { o.nap = d } }
