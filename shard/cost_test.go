package shard_test

import (
	"fmt"
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
