package ratelimit

// grid is one limit's epochs on the timeline every process shares: epoch
// k covers [T0 + k·Epoch, T0 + (k+1)·Epoch) and holds budget(k) permits,
// PerPeriod in every Period consecutive epochs. Taken counts the permits
// reserved in the epochs from Base on; epochs before Base are past, and
// none of them can be reserved any more.
type grid struct {
	T0        int64 `json:"t0"` // unix ns at which epoch 0 starts
	Epoch     int64 `json:"epoch_ns"`
	Period    int64 `json:"period"`     // q+1 epochs, q of them an interval
	PerPeriod int64 `json:"per_period"` // limit + burst
	Skew      int64 `json:"skew_ns"`
	// End, when set, closes the grid: only its epochs that end by End may
	// be reserved, and the next grid starts a gap after it (see
	// state.change).
	End   int64   `json:"end,omitempty"`
	Base  int64   `json:"base"`
	Taken []int64 `json:"taken,omitempty"`
}

// index is the epoch that time t (unix ns) falls in; negative before T0.
func (g *grid) index(t int64) int64 {
	d := t - g.T0
	k := d / g.Epoch
	if d < 0 && d%g.Epoch != 0 {
		k--
	}
	return k
}

func (g *grid) start(k int64) int64 { return g.T0 + k*g.Epoch }

// budget is epoch k's permits: ⌊(k+1)·a⌋ − ⌊k·a⌋ with a = PerPeriod /
// Period, computed on k mod Period. Any m consecutive epochs hold less
// than m·a + 1 (so at most ⌈m·a⌉), and any Period of them exactly
// PerPeriod.
func (g *grid) budget(k int64) int64 { return budget(k, g.Period, g.PerPeriod) }

func budget(k, period, per int64) int64 {
	i := k % period
	if i < 0 {
		i += period
	}
	return (i+1)*per/period - i*per/period
}

// usable is when a permit of epoch k may be granted, on the granting
// process's own clock: from the epoch's start to its end less the skew.
//
// Why the skew is cut off: a process whose clock is off by o grants, in
// true time, within [start-o, start+Epoch-Skew-o). With every offset in
// [lo, hi] and hi-lo ≤ Skew, that is inside [start-hi, start+Epoch-hi):
// the epochs' grants fall in disjoint intervals of length Epoch, one after
// the other, whatever each process's offset, which is what the cap in
// config.layout counts on.
func (g *grid) usable(k int64) (from, until int64) {
	from = g.start(k)
	return from, from + g.Epoch - g.Skew
}

// open reports whether epoch k exists and may still be reserved in this
// grid (not past its End).
func (g *grid) open(k int64) bool {
	return k >= 0 && k >= g.Base && (g.End == 0 || g.start(k)+g.Epoch <= g.End)
}

// taken is how many permits epoch k has reserved; epochs before Base count
// as full.
func (g *grid) taken(k int64) int64 {
	switch i := k - g.Base; {
	case i < 0:
		return g.budget(k)
	case i >= int64(len(g.Taken)):
		return 0
	default:
		return g.Taken[i]
	}
}

// add reserves n permits of epoch k (k ≥ Base).
func (g *grid) add(k, n int64) {
	i := k - g.Base
	for int64(len(g.Taken)) <= i {
		g.Taken = append(g.Taken, 0)
	}
	g.Taken[i] += n
}

// sub gives back n permits of epoch k, if it is still counted.
func (g *grid) sub(k, n int64) {
	i := k - g.Base
	if i < 0 || i >= int64(len(g.Taken)) {
		return
	}
	g.Taken[i] = max(0, g.Taken[i]-n)
	for len(g.Taken) > 0 && g.Taken[len(g.Taken)-1] == 0 {
		g.Taken = g.Taken[:len(g.Taken)-1]
	}
}

// trim forgets the epochs before the one now falls in. A process whose
// clock is ahead trims an epoch that another still sees as current; that
// only stops anyone from reserving more of it (an epoch before Base is
// full), never lets it be reserved twice.
func (g *grid) trim(now int64) {
	cur := g.index(now)
	if cur <= g.Base {
		return
	}
	drop := min(cur-g.Base, int64(len(g.Taken)))
	g.Taken = append([]int64(nil), g.Taken[drop:]...)
	if len(g.Taken) == 0 {
		g.Taken = nil
	}
	g.Base = cur
}

// lastTaken is the last epoch with reservations, or Base-1.
func (g *grid) lastTaken() int64 { return g.Base + int64(len(g.Taken)) - 1 }

// params is what a local permit needs to know of its grid.
type params struct {
	T0, Epoch, Skew, Period, PerPeriod int64
}

func (g *grid) params() params { return params{g.T0, g.Epoch, g.Skew, g.Period, g.PerPeriod} }

// maxBudget is the most permits an epoch of the grid holds.
func (p params) maxBudget() int64 { return (p.PerPeriod + p.Period - 1) / p.Period }

func (p params) usable(k int64) (from, until int64) {
	from = p.T0 + k*p.Epoch
	return from, from + p.Epoch - p.Skew
}
