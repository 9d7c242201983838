package schedule

import "time"

// JitterOf is the delay s gives the tick at t: for tests that check a
// replica waits it out, and no longer.
func JitterOf(s *Schedule, t time.Time) time.Duration { return s.jitter(t) }
