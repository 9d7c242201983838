package shard_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// fleetCost is what one fleet's RPCs were, every member counted.
type fleetCost struct {
	members int
	steady  map[string]int64 // over a quiet window, converged
	join    map[string]int64 // from one more member's start until converged again
	moved   int              // shards the join moved
}

// measureCost converges a map of n shards over members members, counts
// every member's RPCs over a quiet window, then joins one more and
// counts every RPC until the map converges again and every moved shard's
// work started.
func measureCost(t *testing.T, members, n int, window time.Duration) fleetCost {
	t.Helper()
	const ttl = 8 * time.Second
	f := newFleet(t, srv.Endpoints(), srv.Client(), n, ttl)
	c := etcdtest.NewCounter()
	ids := []string{}
	for i := 0; i < members; i++ {
		ids = append(ids, fmt.Sprintf("m%d", i))
	}
	f.startAll(memberOpts{counter: c}, ids...)
	f.waitState(true, 60*time.Second)
	f.rec.ownedBy(t, n, ids, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // the last releases' answers
	c.Reset()
	time.Sleep(window)
	fc := fleetCost{members: members, steady: c.Snapshot()}
	// Still converged at the end: a window in which something moved
	// would measure a move, not the steady state.
	if ok, why := f.state(true); !ok {
		t.Fatalf("not converged after the window: %s", why)
	}

	before := f.rec.Starts()
	c.Reset()
	f.start("newcomer", memberOpts{counter: c})
	f.waitState(true, 60*time.Second)
	f.rec.ownedBy(t, n, append(ids, "newcomer"), 10*time.Second)
	fc.join = c.Snapshot()
	delete(fc.join, "LeaseKeepAlive")
	fc.moved = f.rec.Starts() - before
	f.rec.check(t)
	return fc
}

// unary sums the counted RPCs, not the derived counts (bytes, stream
// opens).
func unary(m map[string]int64) (s int64) {
	for k, v := range m {
		if !strings.ContainsAny(k, " .") {
			s += v
		}
	}
	return s
}

// Cost does not grow with the map or the group:
//
//   - the steady state costs each member its session's keepalives and
//     nothing else, whether 3 members share 16 shards or 10 share 256:
//     following the map and the group is two watches per process, and
//     owning a shard costs no RPC while nothing changes;
//   - a rebalance costs per shard moved: the join's own few RPCs (lease,
//     session key, membership, spec, participation, the watches' first
//     reads), then the old owner's release and the new owner's create (2
//     Txns) per moved shard. Measured: 15 RPCs for 4 moves, 55 for 24.
//
// Not parallel, like the cluster test: each runs alone, so a loaded
// 2-core machine under -race keeps up with their bursts.
func TestCostDoesNotGrow(t *testing.T) {
	const window = 8 * time.Second
	small := measureCost(t, 3, 16, window)
	large := measureCost(t, 10, 256, window)
	for _, fc := range []fleetCost{small, large} {
		name := fmt.Sprintf("%d members", fc.members)
		ka := fc.steady["LeaseKeepAlive"]
		t.Logf("%s: steady over %v: %v (TTL 8s: %.0f RPCs per member per minute); a join: %d moved, %d RPCs (%v)",
			name, window, fc.steady, float64(ka)/float64(fc.members)*float64(time.Minute)/float64(window), fc.moved, unary(fc.join), fc.join)
		for k, v := range fc.steady {
			if k != "LeaseKeepAlive" && v > 0 {
				t.Errorf("%s: %d %s RPCs in the steady state, want only keepalives", name, v, k)
			}
		}
		// One renewal per quarter TTL (2 s) a member, and one more at each
		// end of the window.
		if ka > int64(fc.members)*(int64(window/(2*time.Second))+2) {
			t.Errorf("%s: %d keepalives in %v", name, ka, window)
		}
		const fixed = 8 // the newcomer's lease, session key, join, spec, participation, first reads, and a spare
		if per := float64(unary(fc.join)-fixed) / float64(fc.moved); per > 2.5 {
			t.Errorf("%s: %d RPCs for %d shards moved (%.1f a move past the join's %d), want at most 2.5 a move", name, unary(fc.join), fc.moved, per, fixed)
		}
	}
}
