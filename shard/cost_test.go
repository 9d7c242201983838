package shard_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// steadyCost converges a map of n shards over members members, then
// counts one member's RPCs over a quiet window.
func steadyCost(t *testing.T, members, n int, window time.Duration) map[string]int64 {
	t.Helper()
	const ttl = 8 * time.Second
	f := newFleet(t, srv.Endpoints(), srv.Client(), n, ttl)
	c := etcdtest.NewCounter()
	ids := []string{}
	for i := 1; i < members; i++ {
		ids = append(ids, fmt.Sprintf("m%d", i))
	}
	f.start("counted", memberOpts{counter: c})
	f.startAll(memberOpts{}, ids...)
	f.waitState(true, 60*time.Second)
	time.Sleep(200 * time.Millisecond) // the last events of the convergence
	c.Reset()
	time.Sleep(window)
	snap := c.Snapshot()
	// Still converged at the end: a window in which something moved
	// would measure a move, not the steady state.
	if ok, why := f.state(true); !ok {
		t.Fatalf("not converged after the window: %s", why)
	}
	return snap
}

// The steady state costs a member its session's keepalives and nothing
// else, whether 3 members share 16 shards or 10 share 256: following the
// map and the group is two watches per process, and owning a shard costs
// no RPC while nothing changes.
//
// Not parallel, like the cluster test: each runs alone, so a loaded
// 2-core machine under -race keeps up with their bursts.
func TestSteadyStateCostDoesNotGrow(t *testing.T) {
	const window = 8 * time.Second
	small := steadyCost(t, 3, 16, window)
	large := steadyCost(t, 10, 256, window)
	perMin := func(m map[string]int64) float64 {
		return float64(m["LeaseKeepAlive"]) * float64(time.Minute) / float64(window)
	}
	t.Logf("over %v: 3 members, 16 shards: %v; 10 members, 256 shards: %v (TTL 8s: about %.0f and %.0f RPCs per member per minute)",
		window, small, large, perMin(small), perMin(large))
	for name, m := range map[string]map[string]int64{"3 members": small, "10 members": large} {
		for k, v := range m {
			if k != "LeaseKeepAlive" && v > 0 {
				t.Errorf("%s: %d %s RPCs in the steady state, want only keepalives", name, v, k)
			}
		}
		// One renewal per quarter TTL (2 s), and one more at each end of
		// the window.
		if ka := m["LeaseKeepAlive"]; ka > int64(window/(2*time.Second))+2 {
			t.Errorf("%s: %d keepalives in %v", name, ka, window)
		}
	}
}

// rebalanceCost converges a map of n shards over members members, all
// counted, then joins one more and counts every member's RPCs until the
// map converges again.
func rebalanceCost(t *testing.T, members, n int) (rpcs map[string]int64, moved int) {
	t.Helper()
	f := newFleet(t, srv.Endpoints(), srv.Client(), n, 10*time.Second)
	c := etcdtest.NewCounter()
	ids := []string{}
	for i := 0; i < members; i++ {
		ids = append(ids, fmt.Sprintf("m%d", i))
	}
	f.startAll(memberOpts{counter: c}, ids...)
	f.waitState(true, 60*time.Second)
	f.rec.ownedBy(t, n, ids, 10*time.Second)
	before := f.rec.Starts()
	c.Reset()
	f.start("newcomer", memberOpts{counter: c})
	f.waitState(true, 60*time.Second)
	f.rec.ownedBy(t, n, append(ids, "newcomer"), 10*time.Second)
	snap := c.Snapshot()
	delete(snap, "LeaseKeepAlive")
	f.rec.check(t)
	return snap, f.rec.Starts() - before
}

// A rebalance costs per shard moved, not per shard or member: a join's
// own few RPCs (session, membership, spec, participation, the watches'
// first reads), then per moved shard the old owner's release and the new
// owner's create (two Txns), whether 3 members share 16 shards or 10
// share 256. Measured: 15 RPCs for 4 moves, 55 for 24 (2 Txns a move).
func TestRebalanceCostPerMove(t *testing.T) {
	sum := func(m map[string]int64) (s int64) {
		for k, v := range m {
			if !strings.ContainsAny(k, " .") { // not the derived counts: bytes, stream opens
				s += v
			}
		}
		return s
	}
	small, sm := rebalanceCost(t, 3, 16)
	large, lm := rebalanceCost(t, 10, 256)
	t.Logf("a join to 3 members over 16 shards: %d moved, %d RPCs (%v); to 10 over 256: %d moved, %d RPCs (%v)", sm, sum(small), small, lm, sum(large), large)
	const fixed = 8 // the newcomer's lease, session key, join, spec, participation and first reads, and a spare
	for name, c := range map[string]struct {
		rpcs  int64
		moved int
	}{"small": {sum(small), sm}, "large": {sum(large), lm}} {
		if per := float64(c.rpcs-fixed) / float64(c.moved); per > 2.5 {
			t.Errorf("%s: %d RPCs for %d shards moved (%.1f a move past the join's %d), want at most 2.5 a move", name, c.rpcs, c.moved, per, fixed)
		}
	}
}
