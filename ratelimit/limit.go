package ratelimit

import (
	"fmt"
	"time"
)

// Limit is a rate: Events per Interval. With a burst B, no window of
// Interval ever holds more than Events + B granted events, across every
// process that uses the limiter.
type Limit struct {
	Events   int64
	Interval time.Duration
}

// Per returns the limit of events per interval: Per(100, time.Second).
func Per(events int64, interval time.Duration) Limit {
	return Limit{Events: events, Interval: interval}
}

// String returns the limit as "100/1s".
func (l Limit) String() string { return fmt.Sprintf("%d/%v", l.Events, l.Interval) }

// maxEvents bounds a limit so that the epoch arithmetic cannot overflow.
const maxEvents = 1 << 40

// maxEpochs bounds the epochs of one interval: finer ones would gain at
// most 1/65 of the rate, and cost state and timers.
const maxEpochs = 64

// minEpoch is the shortest epoch: below a millisecond, timers and
// scheduling, not the limit, decide when events happen.
const minEpoch = time.Millisecond

// config is what every user of a limiter must agree on.
type config struct {
	Limit    int64 `json:"limit"`
	Interval int64 `json:"interval_ns"`
	Burst    int64 `json:"burst"`
	Skew     int64 `json:"skew_ns"`
}

func (c config) limit() Limit { return Limit{Events: c.Limit, Interval: time.Duration(c.Interval)} }

func (c config) String() string {
	return fmt.Sprintf("%v burst %d skew %v", c.limit(), c.Burst, time.Duration(c.Skew))
}

// check reports why c cannot be used.
func (c config) check() error {
	switch {
	case c.Limit < 1:
		return fmt.Errorf("%w: limit of %d events, want at least 1", ErrInvalid, c.Limit)
	case c.Limit > maxEvents:
		return fmt.Errorf("%w: limit of %d events, over the %d supported", ErrInvalid, c.Limit, int64(maxEvents))
	case c.Interval <= 0:
		return fmt.Errorf("%w: interval %v, want a positive one", ErrInvalid, time.Duration(c.Interval))
	case c.Burst < 1:
		return fmt.Errorf("%w: burst %d, want at least 1", ErrInvalid, c.Burst)
	case c.Burst > c.Limit:
		return fmt.Errorf("%w: burst %d is above the limit %d (the cap is limit + burst per interval, so no instant may take more than an interval's limit)", ErrInvalid, c.Burst, c.Limit)
	case c.Skew < 0:
		return fmt.Errorf("%w: clock skew %v, want 0 or more", ErrInvalid, time.Duration(c.Skew))
	}
	if _, _, err := c.layout(); err != nil {
		return err
	}
	return nil
}

// layout chooses how the timeline is cut: into epochs of length epoch,
// q of them covering an interval (q·epoch ≥ interval), with limit+burst
// permits spread over every q+1 consecutive epochs as evenly as integers
// allow (grid.budget: epoch k holds ⌊(k+1)·a⌋ − ⌊k·a⌋ with a =
// (limit+burst)/(q+1)).
//
// The cap: a grant of epoch k happens, in true time, within one interval
// of length epoch (its usable part on the granting process's clock, moved
// by that clock's offset; the skew is cut off the end of every epoch so
// that no two epochs' intervals overlap whatever the offsets, see
// grid.usable). A window of length interval ≤ q·epoch meets at most q+1
// consecutive of those disjoint intervals, and any q+1 consecutive epochs
// hold exactly limit+burst permits: no window holds more.
//
// The burst: every epoch holds at least ⌊a⌋ ≥ burst permits (q ≤
// limit/burst), so a request of up to burst events fits in one epoch,
// which is the only way n events can be granted at one instant.
//
// The rate: q·a = q·(limit+burst)/(q+1) per interval, at most the limit
// (again q ≤ limit/burst) and the larger the finer the epochs, so q is
// the largest allowed: limit/burst, 64, and epochs no shorter than 1ms or
// twice the skew. The rate is the limit exactly when the burst divides it
// with limit/burst ≤ 64; otherwise at least 1 − 1/(q+1)² of it (94% from
// q = 3, that is for bursts up to a quarter of the limit; 75% at worst,
// for a burst over half the limit), and 98.5% when 64 epochs cap q.
func (c config) layout() (epoch, q int64, err error) {
	floor := max(int64(minEpoch), 2*c.Skew)
	if c.Interval < floor {
		return 0, 0, fmt.Errorf("%w: interval %v is shorter than %v (1ms, or twice the clock skew %v)", ErrInvalid,
			time.Duration(c.Interval), time.Duration(floor), time.Duration(c.Skew))
	}
	q = max(1, min(c.Interval/floor, maxEpochs, c.Limit/c.Burst))
	return (c.Interval + q - 1) / q, q, nil
}

// grid returns c's grid from t0.
func (c config) grid(t0 int64) (grid, error) {
	epoch, q, err := c.layout()
	if err != nil {
		return grid{}, err
	}
	return grid{T0: t0, Epoch: epoch, Period: q + 1, PerPeriod: c.Limit + c.Burst, Skew: c.Skew}, nil
}
