package shard

import (
	"fmt"
	"math/rand"
	"strconv"
	"testing"
)

// The plan is a pure function; this white-box test runs it over many
// random memberships, converging each time as the members would (every
// shard moved to its target), and checks what the package promises:
// every member within one shard of its weighted share, a join moving
// only what the newcomers' quotas take, a leave only the leaver's shards.
func TestPlanBalancesAndMovesOnlyWhatItMust(t *testing.T) {
	const n = 256
	shards := make([]uint64, n)
	for i := range shards {
		shards[i] = hashString(strconv.Itoa(i))
	}
	converge := func(cands []candidate, owner []int) []int {
		for range 3 {
			target, _ := plan(shards, cands, owner)
			owner = target
		}
		return owner
	}
	remap := func(owner []int, from, to []candidate) []int {
		idx := map[string]int{}
		for i, c := range to {
			idx[c.id] = i
		}
		out := make([]int, len(owner))
		for s, o := range owner {
			out[s] = -1
			if o >= 0 {
				if j, ok := idx[from[o].id]; ok {
					out[s] = j
				}
			}
		}
		return out
	}
	moved := func(a, b []int, ca, cb []candidate) int {
		m := 0
		for s := range a {
			if a[s] < 0 || b[s] < 0 || ca[a[s]].id != cb[b[s]].id {
				m++
			}
		}
		return m
	}
	worstJoin, worstLeave := 0.0, 0.0
	for trial := range 200 {
		r := rand.New(rand.NewSource(int64(trial)))
		var all []candidate
		for i := range 12 {
			id := fmt.Sprintf("m%d-%d", i, r.Int())
			w := int64(1)
			if trial%4 == 3 {
				w = int64(1 + r.Intn(4))
			}
			all = append(all, candidate{id: id, weight: w, hash: hashString(id)})
		}
		ten := append([]candidate(nil), all[:10]...)
		none := make([]int, n)
		for i := range none {
			none[i] = -1
		}
		a10 := converge(ten, none)
		target, quota := plan(shards, ten, a10)
		for s := range target {
			if target[s] != a10[s] {
				t.Fatalf("trial %d: a converged plan still moves shard %d", trial, s)
			}
		}
		load := make([]int, len(ten))
		var total int64
		for _, c := range ten {
			total += c.weight
		}
		for _, o := range a10 {
			load[o]++
		}
		for c := range ten {
			share := float64(n) * float64(ten[c].weight) / float64(total)
			if float64(load[c]) < share-1 || float64(load[c]) > share+1 || load[c] != quota[c] {
				t.Fatalf("trial %d: member %d has %d shards, quota %d, share %.1f", trial, c, load[c], quota[c], share)
			}
		}
		// Join two.
		a12 := converge(all, remap(a10, ten, all))
		_, q12 := plan(shards, all, a12)
		ideal := q12[10] + q12[11]
		if m := moved(a10, a12, ten, all); m != ideal {
			t.Fatalf("trial %d: joining two moved %d shards, their quotas are %d", trial, m, ideal)
		}
		var w12 int64
		for _, c := range all {
			w12 += c.weight
		}
		worstJoin = max(worstJoin, float64(ideal)/(float64(n)*float64(all[10].weight+all[11].weight)/float64(w12)))
		// Three leave.
		seven := append([]candidate(nil), ten[3:]...)
		a7 := converge(seven, remap(a10, ten, seven))
		lost := load[0] + load[1] + load[2]
		if m := moved(a10, a7, ten, seven); m != lost {
			t.Fatalf("trial %d: three leaving moved %d shards; they held %d", trial, m, lost)
		}
		worstLeave = max(worstLeave, float64(lost)/(float64(n)*float64(ten[0].weight+ten[1].weight+ten[2].weight)/float64(total)))
	}
	t.Logf("worst moved/ideal over 200 memberships: join of two %.3f, leave of three %.3f", worstJoin, worstLeave)
}

func TestQuotasAddUp(t *testing.T) {
	for n := 1; n < 300; n += 7 {
		for m := 1; m < 20; m++ {
			var cs []candidate
			for i := range m {
				cs = append(cs, candidate{id: strconv.Itoa(i), weight: int64(1 + i%3), hash: hashString(strconv.Itoa(i))})
			}
			sum := 0
			for _, q := range quotas(n, cs) {
				sum += q
			}
			if sum != n {
				t.Fatalf("n=%d m=%d: quotas add up to %d", n, m, sum)
			}
		}
	}
}
