package ratelimit

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// state is the value of a limiter's one shared key, readable in etcdctl:
// the limit every user follows and the grids of epochs with what each
// epoch has reserved. Every reservation and every return is one Txn that
// rewrites it, compared on its mod revision.
//
//	{"limit":100,"interval_ns":1000000000,"burst":10,"skew_ns":10000000,
//	 "grids":[{"t0":1765000000000000000,"epoch_ns":100000000,"budget":10,
//	           "skew_ns":10000000,"base":17650000123,"taken":[10,10,4]}]}
//
// Several grids exist only for a while after SetLimit: the old one stays
// until its last reserved epoch, the new one starts a gap after it.
type state struct {
	config
	// Set marks a limit stored by SetLimit or SetBurst, which every user
	// follows; a first user's limit must match New's.
	Set   bool   `json:"set,omitempty"`
	Grids []grid `json:"grids"`
}

// maxGrids bounds the grids one state keeps: each SetLimit adds one until
// the one before it ends, so only calls faster than the horizon pile up.
const maxGrids = 8

// fresh is the state a first user stores: one grid from the start of the
// epoch now falls in.
func fresh(c config, now int64) (*state, error) {
	g, err := c.grid(0)
	if err != nil {
		return nil, err
	}
	g.T0 = now - now%g.Epoch
	if now < 0 {
		g.T0 = now - (now%g.Epoch + g.Epoch)
	}
	return &state{config: c, Grids: []grid{g}}, nil
}

func decodeState(v []byte) (*state, error) {
	var s state
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fmt.Errorf("stored state %.64q: %w", v, err)
	}
	if len(s.Grids) == 0 {
		return nil, fmt.Errorf("stored state %.64q has no grid", v)
	}
	if err := s.config.check(); err != nil {
		return nil, fmt.Errorf("stored state: %w", err)
	}
	for _, g := range s.Grids {
		if g.Epoch <= 0 || g.Period < 2 || g.PerPeriod < g.Period || g.Skew < 0 || g.Skew*2 > g.Epoch {
			return nil, fmt.Errorf("stored state %.64q has a malformed grid", v)
		}
	}
	return &s, nil
}

func (s *state) encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("ratelimit: encode state: %v", err)) // only ints and slices
	}
	return string(b)
}

func (s *state) clone() *state {
	c := *s
	c.Grids = make([]grid, len(s.Grids))
	for i, g := range s.Grids {
		g.Taken = append([]int64(nil), g.Taken...)
		c.Grids[i] = g
	}
	return &c
}

// last is the grid of the limit in force (or about to be).
func (s *state) last() *grid { return &s.Grids[len(s.Grids)-1] }

// grid returns the grid that starts at t0, or nil.
func (s *state) grid(t0 int64) *grid {
	for i := range s.Grids {
		if s.Grids[i].T0 == t0 {
			return &s.Grids[i]
		}
	}
	return nil
}

// trim forgets past epochs, and grids that ended, as of now.
func (s *state) trim(now int64) {
	for i := range s.Grids {
		s.Grids[i].trim(now)
	}
	for len(s.Grids) > 1 && s.Grids[0].End <= now {
		s.Grids = s.Grids[1:]
	}
}

// epoch is one epoch of one grid.
type epoch struct {
	g *grid
	k int64
}

func (e epoch) room() int64 { return e.g.budget(e.k) - e.g.taken(e.k) }

// each calls fn for every epoch, in time order, that may still be
// reserved and whose usable part ends after now+margin, starting before
// until, until fn returns false.
func (s *state) each(now, margin, until int64, fn func(e epoch) bool) {
	for i := range s.Grids {
		g := &s.Grids[i]
		k := max(g.Base, g.index(now), 0)
		for ; g.open(k) && g.start(k) < until; k++ {
			if _, end := g.usable(k); end > now+margin {
				if !fn(epoch{g, k}) {
					return
				}
			}
		}
	}
}

// take is permits of one epoch, reserved or to be returned.
type take struct {
	T0 int64 // the grid
	K  int64 // the epoch
	N  int64
}

// apply adds takes to the reservations; it fails, changing nothing, if an
// epoch would go over its budget or is no longer open (a plan made on
// another state).
func (s *state) apply(ts []take) error {
	for _, t := range ts {
		g := s.grid(t.T0)
		if g == nil || !g.open(t.K) || g.taken(t.K)+t.N > g.budget(t.K) {
			return fmt.Errorf("ratelimit: internal error: plan does not fit the state")
		}
	}
	for _, t := range ts {
		s.grid(t.T0).add(t.K, t.N)
	}
	return nil
}

// release gives takes back: to the epochs still counted, the others being
// past.
func (s *state) release(ts []take) {
	for _, t := range ts {
		if g := s.grid(t.T0); g != nil {
			g.sub(t.K, t.N)
		}
	}
}

// change switches to limit c, as SetLimit does, at now.
//
// The grid in force is closed at X, the end of its last epoch that holds
// reservations or of the epoch now falls in, whichever is later: no
// permit of it is ever reserved past X. The new grid starts at S = X +
// gap, so no permit of it can be granted before S. A window that ends
// before S obeys the old cap and one that starts after X the new one; a
// window across the change obeys the larger of the two caps (for an
// unchanged interval). Why: with a = (limit+burst)/(q+1) permits per epoch
// on average and r = a/epoch, its old part of length x meets at most x/E
// + 1 consecutive old epochs, which hold less than r·x + a + 1 permits
// (see grid.budget); its new part of length y likewise less than r'·y +
// a' + 1, with x + y = interval − gap. The sum is less than
// max(r,r')·(interval − gap) + a + a' + 2, and the gap is chosen so that
// max(r,r')·gap ≥ max(a,a') + 2: less than max(r,r')·interval +
// min(a,a') ≤ max(q·a + a, q'·a' + a') = max(limit+burst, limit'+burst').
//
// A grid that has not started yet and holds nothing (a change made
// moments ago) is replaced rather than chained.
func (s *state) change(c config, now int64) error {
	ng, err := c.grid(0)
	if err != nil {
		return err
	}
	s.trim(now)
	g := s.last()
	if len(s.Grids) > 1 && g.T0 > now && len(g.Taken) == 0 {
		s.Grids = s.Grids[:len(s.Grids)-1]
		g = s.last()
	}
	x := g.End
	if x == 0 {
		cur := max(g.index(now), 0)
		x = max(g.start(g.lastTaken()+1), g.start(cur+1))
		g.End = x
	}
	if len(s.Grids) >= maxGrids {
		return fmt.Errorf("ratelimit: %d limit changes are still pending; try again after %v", len(s.Grids), time.Duration(x-now))
	}
	ng.T0 = x + gap(g, &ng)
	s.Grids = append(s.Grids, ng)
	s.config, s.Set = c, true
	return nil
}

// gap is the quiet time between two grids: ⌈(max(a,a') + 2) / max(r,r')⌉,
// with a a grid's mean permits per epoch and r = a/epoch (see change).
func gap(g, ng *grid) int64 {
	a := float64(g.PerPeriod) / float64(g.Period)
	na := float64(ng.PerPeriod) / float64(ng.Period)
	r := max(a/float64(g.Epoch), na/float64(ng.Epoch))
	return int64(math.Ceil((max(a, na)+2)/r)) + 1
}
