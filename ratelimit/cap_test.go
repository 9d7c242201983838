package ratelimit

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// grantAt is one granted event in true time.
type grantAt struct {
	t int64
}

// era is when a grid's grants can happen, in true time, and its cap.
type era struct {
	from, until int64 // until 0: open
	cap         int64
}

// maxInWindow returns the most events in any window [w, w+interval) and
// the window's allowed cap (the largest cap of the eras it meets): the
// check the package promises.
func checkWindows(t *testing.T, grants []grantAt, eras []era, interval int64) (worst, worstCap int64) {
	t.Helper()
	slices.SortFunc(grants, func(a, b grantAt) int { return int(a.t - b.t) })
	j := 0
	for i := range grants {
		w := grants[i].t
		for j < len(grants) && grants[j].t < w+interval {
			j++
		}
		n := int64(j - i)
		var capW int64
		for _, e := range eras {
			if e.from < w+interval && (e.until == 0 || e.until > w) {
				capW = max(capW, e.cap)
			}
		}
		if n > capW {
			t.Fatalf("window [%d, %d) holds %d events, over its cap %d", w, w+interval, n, capW)
		}
		if n > worst {
			worst, worstCap = n, capW
		}
	}
	return worst, worstCap
}

// The cap holds against the worst a process may do: processes whose
// clocks differ by up to the skew, each reserving as much as the state
// lets it, granting every permit at the first or the last instant its
// epoch allows on its own clock, giving some back, while the limit
// changes now and then. Every window of the interval, in true time,
// holds at most limit + burst (the larger of two across a change).
func TestCapHoldsForAdversarialGrants(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 60
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		interval := []int64{int64(100 * time.Millisecond), int64(time.Second), int64(3 * time.Second)}[r.IntN(3)]
		cfgOf := func() config {
			for {
				limit := 1 + r.Int64N(200)
				c := config{Limit: limit, Interval: interval, Burst: 1 + r.Int64N(limit),
					Skew: []int64{0, int64(time.Millisecond), int64(5 * time.Millisecond), int64(20 * time.Millisecond)}[r.IntN(4)]}
				if c.check() == nil {
					return c
				}
			}
		}
		cfg := cfgOf()
		procs := 2 + r.IntN(5)
		offs := make([]int64, procs)
		for i := range offs {
			offs[i] = r.Int64N(cfg.Skew + 1)
		}
		const t0 = int64(1_700_000_000_000_000_000)
		st, err := fresh(cfg, t0+offs[0])
		if err != nil {
			t.Fatal(err)
		}
		eras := []era{{from: st.Grids[0].T0 - cfg.Skew, cap: cfg.Limit + cfg.Burst}}
		type held struct {
			x   lot
			own int
		}
		var stock []held
		var grants []grantAt
		end := t0 + 20*interval
		for now := t0; now < end; now += 1 + r.Int64N(max(1, st.last().Epoch/3)) {
			p := r.IntN(procs)
			local := now + offs[p]
			// Grant what is due: each permit at the first or the last
			// instant its epoch allows, whichever the dice say, as long as
			// that is not in this process's past.
			kept := stock[:0]
			for _, h := range stock {
				from, until := h.x.usable()
				lo := offs[h.own] + now
				if until <= lo {
					continue // lapsed
				}
				if from > lo+st.last().Epoch || r.IntN(3) == 0 {
					kept = append(kept, h)
					continue
				}
				at := max(from, lo)
				if r.IntN(2) == 0 {
					at = until - 1
				}
				for range h.x.n {
					grants = append(grants, grantAt{t: at - offs[h.own]})
				}
			}
			stock = kept
			switch r.IntN(20) {
			case 0: // change the limit
				c := cfgOf()
				c.Skew = cfg.Skew
				c.Interval = cfg.Interval
				if c.check() != nil {
					continue
				}
				if err := st.change(c, local); err != nil {
					continue
				}
				eras[len(eras)-1].until = st.Grids[len(st.Grids)-2].End + cfg.Skew
				eras = append(eras, era{from: st.last().T0 - cfg.Skew, cap: c.Limit + c.Burst})
			case 1, 2: // give some back (permits never granted)
				var ret []take
				kept := stock[:0]
				for _, h := range stock {
					if h.own == p && r.IntN(2) == 0 {
						ret = append(ret, take{T0: h.x.p.T0, K: h.x.k, N: h.x.n})
						continue
					}
					kept = append(kept, h)
				}
				stock = kept
				st.trim(local)
				st.release(ret)
			default: // reserve as much as the state lets
				st.trim(local)
				a := ask{now: local, until: local + 3*interval, quota: 1 + r.Int64N(3*st.Limit), spread: 1 + r.Int64N(3)}
				for range r.IntN(4) {
					a.reqs = append(a.reqs, req{n: 1 + r.Int64N(st.Burst)})
				}
				ts, _ := st.place(a)
				if err := st.apply(ts); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				for _, tk := range ts {
					g := st.grid(tk.T0)
					stock = append(stock, held{x: lot{p: g.params(), k: tk.K, n: tk.N}, own: p})
				}
			}
		}
		// Every grid's era ends where its last grant can be.
		worst, capW := checkWindows(t, grants, eras, interval)
		if testing.Verbose() && seed < 5 {
			t.Logf("seed %d: %v, %d processes, %d grants, worst window %d of cap %d", seed, cfg, procs, len(grants), worst, capW)
		}
	}
}

// With clocks apart by more than the skew the limiter was told, the same
// adversary does get over the cap: the skew is what the cap rests on, not
// a formality. (Two processes, one epoch's permits granted at its last
// instant by a slow clock, the next epoch's at its first by a fast one.)
func TestCapNeedsTheSkew(t *testing.T) {
	cfg := config{Limit: 10, Interval: int64(time.Second), Burst: 1, Skew: 0}
	const t0 = int64(1_700_000_000_000_000_000)
	st, err := fresh(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	g := st.last()
	slow, fast := int64(0), int64(20*time.Millisecond) // true = local - off
	var grants []grantAt
	// The slow process takes every permit of epochs 0..q-1, granting at the
	// last instant; the fast one takes epoch q's and grants at its first.
	for k := int64(0); k <= g.Period-1; k++ {
		from, until := g.usable(k)
		n := g.budget(k) - g.taken(k)
		g.add(k, n)
		at, off := until-1, slow
		if k == g.Period-1 {
			at, off = from, fast
		}
		for range n {
			grants = append(grants, grantAt{t: at - off})
		}
	}
	// k = q: one more epoch; the fast process grants epoch q+1's first
	// permits 20ms early in true time, inside the window of epoch 0's last.
	from, _ := g.usable(g.Period)
	for range g.budget(g.Period) {
		grants = append(grants, grantAt{t: from - fast})
	}
	slices.SortFunc(grants, func(a, b grantAt) int { return int(a.t - b.t) })
	most := 0
	for i := range grants {
		n := 0
		for j := i; j < len(grants) && grants[j].t < grants[i].t+cfg.Interval; j++ {
			n++
		}
		most = max(most, n)
	}
	if int64(most) <= cfg.Limit+cfg.Burst {
		t.Fatalf("with clocks 20ms apart and no skew allowed, the worst window holds %d, within the cap %d: the adversary is too weak to show anything", most, cfg.Limit+cfg.Burst)
	}
	t.Logf("clocks 20ms apart, skew 0: a window holds %d events, over the cap %d", most, cfg.Limit+cfg.Burst)
}

// Saturated, the epochs give their rate: every epoch full, q·a per
// interval.
func TestSaturatedRate(t *testing.T) {
	cfg := config{Limit: 100, Interval: int64(time.Second), Burst: 7, Skew: int64(10 * time.Millisecond)}
	const t0 = int64(1_700_000_000_000_000_000)
	st, err := fresh(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	end := t0 + 30*cfg.Interval
	for now := t0; now < end; now += st.last().Epoch / 2 {
		st.trim(now)
		ts, _ := st.place(ask{now: now, until: now + 1, quota: 1 << 40, reqs: []req{{n: 1}}, spread: 1 << 30})
		if err := st.apply(ts); err != nil {
			t.Fatal(err)
		}
		for _, tk := range ts {
			total += tk.N
		}
	}
	g := st.last()
	want := float64(g.PerPeriod) / float64(g.Period) * float64(end-t0) / float64(g.Epoch)
	if float64(total) < want-float64(g.PerPeriod) || float64(total) > want+float64(g.PerPeriod) {
		t.Fatalf("30 intervals saturated gave %d permits, want about %.0f", total, want)
	}
	t.Logf("%v: %d permits in 30 intervals, %.1f per interval (limit %d)", cfg, total, float64(total)/30, cfg.Limit)
}
