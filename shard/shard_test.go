package shard_test

import (
	"testing"
	"time"
)

// Three members over 32 shards: every shard owned by one of them, each
// with its share; a member that leaves hands its shards over, drained.
func TestSpreadAndHandOver(t *testing.T) {
	t.Parallel()
	f := newFleet(t, srv.Endpoints(), srv.Client(), 32, 5*time.Second)
	f.startAll(memberOpts{}, "a", "b", "c")
	d := f.waitState(true, 20*time.Second)
	t.Logf("3 members over 32 shards converged in %v", d)
	f.leave("b")
	d = f.waitState(true, 20*time.Second)
	t.Logf("after b left: converged in %v; causes %v", d, f.rec.causes())
	f.rec.check(t)
}
