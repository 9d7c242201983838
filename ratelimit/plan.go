package ratelimit

// ask is what one reservation asks of the state.
type ask struct {
	now int64
	// margin: an epoch is worth reserving only if its usable part ends
	// after now+margin (the reservation's answer must arrive in time).
	margin int64
	// until: only epochs that start before it.
	until int64
	// reqs are the sizes of the process's waiting requests, first come
	// first; each must fit in one epoch. A request with now set takes
	// only the epoch usable now (Allow).
	reqs []req
	// spread is how many permits the process wants in each epoch ahead
	// (its demand), held counts what it holds of an epoch already.
	spread int64
	held   func(t0, k int64) int64
	// quota bounds the permits taken in all, but for the first request,
	// which is always placed if some epoch has room for it.
	quota int64
}

type req struct {
	n   int64
	now bool
}

// place plans a reservation on s: the requests in order, each in the
// earliest epoch with room for all of it, then the demand spread over the
// epochs ahead, all within the quota. It returns the permits to take, per
// epoch in time order, and which requests were placed.
func (s *state) place(a ask) (ts []take, placed []bool) {
	placed = make([]bool, len(a.reqs))
	idx := map[[2]int64]int{} // (t0, k) → index in ts
	var total int64
	planned := func(e epoch) int64 {
		if i, ok := idx[[2]int64{e.g.T0, e.k}]; ok {
			return ts[i].N
		}
		return 0
	}
	add := func(e epoch, n int64) {
		key := [2]int64{e.g.T0, e.k}
		if i, ok := idx[key]; ok {
			ts[i].N += n
		} else {
			idx[key] = len(ts)
			ts = append(ts, take{T0: e.g.T0, K: e.k, N: n})
		}
		total += n
	}
	for i, r := range a.reqs {
		if i > 0 && total+r.n > a.quota {
			break
		}
		s.each(a.now, a.margin, a.until, func(e epoch) bool {
			if r.now && e.g.start(e.k) > a.now {
				return false
			}
			if e.room()-planned(e) >= r.n {
				add(e, r.n)
				placed[i] = true
				return false
			}
			return true
		})
	}
	if a.spread > 0 {
		s.each(a.now, a.margin, a.until, func(e epoch) bool {
			if total >= a.quota {
				return false
			}
			want := a.spread - planned(e)
			if a.held != nil {
				want -= a.held(e.g.T0, e.k)
			}
			if n := min(want, e.room()-planned(e), a.quota-total); n > 0 {
				add(e, n)
			}
			return true
		})
	}
	// Keep ts in time order: epochs were visited in order, but a later
	// request may have been placed before an earlier one's epoch.
	sortTakes(ts)
	return ts, placed
}

func sortTakes(ts []take) {
	for i := 1; i < len(ts); i++ {
		for j := i; j > 0 && less(ts[j], ts[j-1]); j-- {
			ts[j], ts[j-1] = ts[j-1], ts[j]
		}
	}
}

func less(a, b take) bool {
	if a.T0 != b.T0 {
		return a.T0 < b.T0
	}
	return a.K < b.K
}
