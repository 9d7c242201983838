package lease

import "time"

// WithClock returns cfg with the session's clock replaced by now, for
// the tests that step the wall clock.
func WithClock(cfg Config, now func() time.Time) Config {
	cfg.now = now
	return cfg
}
