package shard

import (
	"cmp"
	"slices"
)

// The plan: which member each shard should be with, computed by every
// member alike from what they all see (the live members with their
// weights, and who owns each shard now), so no one decides for the
// others and no message is exchanged.
//
// Each member has a quota, its weight's share of the shards (the
// remainder of the division going to the members with the largest
// fractions, ties broken by a hash of their ids). A shard stays with its
// live owner unless that owner holds more than its quota; an owner over
// quota gives up the shards it scores lowest; every shard given up, or
// owned by no live member, goes to the member under quota that scores it
// highest (rendezvous hashing: a hash of the pair, the same everywhere).
//
// Why not plain rendezvous hashing (each shard to the member that scores
// it highest): its loads are as uneven as coin flips, 17 to 43 shards a
// member for 256 shards over 10 (the mean is 25.6), and bounding the
// loads of a pure function of the membership makes a join move shards
// between the old members too (19% more than the new members get, on
// average). Starting from who owns what, a join moves exactly the
// shards the new member's quota takes from the members now over theirs,
// a leave moves exactly the leaver's shards, and every member ends
// within one shard of its weighted share. (What the plan cannot do is
// say in advance where a shard will go: a router asks Owner.)

// candidate is one live member, as the plan sees it.
type candidate struct {
	id     string
	weight int64
	hash   uint64
}

// plan returns, for each shard, the index of the candidate it should be
// with (-1 when there is none), and each candidate's quota. shards are
// the shards' hashes, owner the index of each shard's live owner (-1:
// none).
func plan(shards []uint64, cands []candidate, owner []int) (target, quota []int) {
	n := len(shards)
	target = make([]int, n)
	for i := range target {
		target[i] = -1
	}
	if len(cands) == 0 {
		return target, nil
	}
	quota = quotas(n, cands)
	load := make([]int, len(cands))
	held := make([][]int, len(cands))
	for s, o := range owner {
		if o >= 0 {
			load[o]++
			held[o] = append(held[o], s)
			target[s] = o
		}
	}
	// Owners over quota give up the shards they score lowest.
	for c, ss := range held {
		over := load[c] - quota[c]
		if over <= 0 {
			continue
		}
		slices.SortFunc(ss, func(a, b int) int {
			return cmp.Or(cmp.Compare(score(cands[c].hash, shards[a]), score(cands[c].hash, shards[b])), cmp.Compare(a, b))
		})
		for _, s := range ss[:over] {
			target[s] = -1
		}
		load[c] = quota[c]
	}
	// Every shard without a place goes to the member under quota that
	// scores it highest, in an order every member agrees on.
	var free []int
	for s, t := range target {
		if t < 0 {
			free = append(free, s)
		}
	}
	slices.SortFunc(free, func(a, b int) int { return cmp.Or(cmp.Compare(shards[a], shards[b]), cmp.Compare(a, b)) })
	for _, s := range free {
		best, bestScore := -1, uint64(0)
		for c := range cands {
			if load[c] >= quota[c] {
				continue
			}
			if sc := score(cands[c].hash, shards[s]); best < 0 || sc > bestScore {
				best, bestScore = c, sc
			}
		}
		target[s] = best
		load[best]++
	}
	return target, quota
}

// quotas divides n shards among cands in proportion to their weights.
// The quotas add up to n exactly.
func quotas(n int, cands []candidate) []int {
	var total int64
	for _, c := range cands {
		total += c.weight
	}
	q := make([]int, len(cands))
	rest := n
	order := make([]int, len(cands))
	for i, c := range cands {
		q[i] = int(int64(n) * c.weight / total)
		rest -= q[i]
		order[i] = i
	}
	frac := func(i int) int64 { return int64(n) * cands[i].weight % total }
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(frac(b), frac(a)), cmp.Compare(cands[b].hash, cands[a].hash), cmp.Compare(cands[a].id, cands[b].id))
	})
	for _, i := range order[:rest] {
		q[i]++
	}
	return q
}

// hashString is FNV-1a over s, then mixed: every member must compute the
// same value on every platform and Go version, so it is written here,
// not taken from a library whose output may change.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// score is the rendezvous score of a member for a shard.
func score(member, shard uint64) uint64 { return mix(member ^ mix(shard+0x9e3779b97f4a7c15)) }

// mix is splitmix64's finalizer: every input bit flips each output bit
// with probability about 1/2.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
