package ratelimit

import (
	"testing"
	"time"
)

func TestLayout(t *testing.T) {
	for _, c := range []struct {
		limit, burst   int64
		interval, skew time.Duration
		q              int64 // epochs per interval
	}{
		{100, 10, time.Second, 0, 10},                    // exact: the burst divides the limit
		{100, 100, time.Second, 0, 1},                    // one epoch per interval: cap 2L over 2 epochs
		{10, 1, time.Second, 0, 10},                      // one per epoch
		{100, 1, time.Second, 0, 64},                     // 64 epochs at most: rate 99.4
		{100, 1, time.Second, 10 * time.Millisecond, 50}, // 20ms epochs for a 10ms skew
		{100, 30, time.Second, 0, 3},                     // rate 97.5
		{1, 1, time.Second, 0, 1},                        // cap 2 over 2 epochs
		{10, 1, 100 * time.Millisecond, 10 * time.Millisecond, 5},
	} {
		cfg := config{Limit: c.limit, Interval: int64(c.interval), Burst: c.burst, Skew: int64(c.skew)}
		if err := cfg.check(); err != nil {
			t.Fatalf("%v: %v", cfg, err)
		}
		g, err := cfg.grid(0)
		if err != nil {
			t.Fatal(err)
		}
		q := g.Period - 1
		if q != c.q || g.Epoch*q < cfg.Interval || g.Epoch*(q-1) >= cfg.Interval {
			t.Errorf("%v: %d epochs of %v, want %d", cfg, q, time.Duration(g.Epoch), c.q)
		}
		if g.Epoch < int64(minEpoch) || g.Epoch < 2*cfg.Skew {
			t.Errorf("%v: epoch %v is under 1ms or twice the skew", cfg, time.Duration(g.Epoch))
		}
		checkBudgets(t, cfg, &g)
	}
}

// checkBudgets checks what the cap, the burst and the rate rest on: any
// q+1 consecutive epochs hold exactly limit+burst, every epoch at least
// the burst, any m consecutive at most ⌈m·a⌉, and q·a ≤ limit.
func checkBudgets(t *testing.T, cfg config, g *grid) {
	t.Helper()
	q := g.Period - 1
	if q*(cfg.Limit+cfg.Burst) > cfg.Limit*(q+1) {
		t.Errorf("%v: rate %d·%d/%d over the limit", cfg, q, cfg.Limit+cfg.Burst, q+1)
	}
	for start := int64(-3); start < 2*g.Period; start++ {
		var sum int64
		for m := int64(1); m <= 2*g.Period; m++ {
			k := start + m - 1
			b := g.budget(k)
			if b < cfg.Burst {
				t.Fatalf("%v: epoch %d holds %d, under the burst", cfg, k, b)
			}
			sum += b
			if m == g.Period && sum != cfg.Limit+cfg.Burst {
				t.Fatalf("%v: %d epochs from %d hold %d, want limit+burst %d", cfg, m, start, sum, cfg.Limit+cfg.Burst)
			}
			if sum*g.Period > m*g.PerPeriod+g.Period-1 { // sum > ⌈m·a⌉
				t.Fatalf("%v: %d epochs from %d hold %d, over ⌈%d·%d/%d⌉", cfg, m, start, sum, m, g.PerPeriod, g.Period)
			}
		}
	}
}

func TestLayoutSustainsNearTheLimit(t *testing.T) {
	// Every limit up to 300 with every burst: the rate is exactly the
	// limit when the burst divides it (and limit/burst ≤ 64), at least
	// 1 − 1/(q+1)² of it otherwise, 75% at worst.
	for limit := int64(1); limit <= 300; limit++ {
		for burst := int64(1); burst <= limit; burst++ {
			cfg := config{Limit: limit, Interval: int64(time.Second), Burst: burst}
			g, err := cfg.grid(0)
			if err != nil {
				t.Fatal(err)
			}
			q := g.Period - 1
			rate := float64(q*(limit+burst)) / float64(q+1)
			if limit%burst == 0 && limit/burst <= maxEpochs && rate != float64(limit) {
				t.Errorf("%v: rate %v, want exactly the limit", cfg, rate)
			}
			floor := 1 - 1/float64((q+1)*(q+1)) // q = limit/burst
			if q == maxEpochs {
				floor = float64(maxEpochs) / (maxEpochs + 1)
			}
			if f := rate / float64(limit); f < floor-1e-9 || f < 0.75 {
				t.Errorf("%v: rate %v is %.3f of the limit", cfg, rate, f)
			}
			if limit <= 40 {
				checkBudgets(t, cfg, &g)
			}
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []config{
		{Limit: 0, Interval: int64(time.Second), Burst: 1},
		{Limit: -1, Interval: int64(time.Second), Burst: 1},
		{Limit: 10, Interval: 0, Burst: 1},
		{Limit: 10, Interval: -5, Burst: 1},
		{Limit: 10, Interval: int64(time.Second), Burst: 0},
		{Limit: 10, Interval: int64(time.Second), Burst: -3},
		{Limit: 10, Interval: int64(time.Second), Burst: 11},
		{Limit: 10, Interval: int64(time.Second), Burst: 1, Skew: -1},
		{Limit: 10, Interval: int64(time.Second), Burst: 1, Skew: int64(600 * time.Millisecond)},
		{Limit: 10, Interval: int64(time.Microsecond), Burst: 1},
		{Limit: maxEvents + 1, Interval: int64(time.Second), Burst: 1},
	} {
		if err := c.check(); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestGridIndexAndTrim(t *testing.T) {
	g := grid{T0: 1000, Epoch: 100, Period: 2, PerPeriod: 10, Skew: 10}
	for _, c := range []struct{ t, k int64 }{{1000, 0}, {1099, 0}, {1100, 1}, {999, -1}, {900, -1}, {899, -2}} {
		if k := g.index(c.t); k != c.k {
			t.Errorf("index(%d) = %d, want %d", c.t, k, c.k)
		}
	}
	if from, until := g.usable(3); from != 1300 || until != 1390 {
		t.Errorf("usable(3) = [%d, %d)", from, until)
	}
	g.add(2, 3)
	g.add(4, 5)
	if g.taken(2) != 3 || g.taken(3) != 0 || g.taken(4) != 5 || len(g.Taken) != 5 {
		t.Fatalf("taken %v", g.Taken)
	}
	g.trim(1350) // now in epoch 3
	if g.Base != 3 || g.taken(2) != g.budget(2) || g.taken(4) != 5 {
		t.Fatalf("after trim: base %d taken %v", g.Base, g.Taken)
	}
	g.sub(4, 9)
	if len(g.Taken) != 0 {
		t.Fatalf("sub to zero leaves %v", g.Taken)
	}
	g.sub(1, 1) // a past epoch: ignored
	g.End = 1600
	if !g.open(5) || g.open(6) {
		t.Errorf("a grid ending at 1600: open(5) %v open(6) %v", g.open(5), g.open(6))
	}
}
