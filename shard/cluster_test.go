package shard_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
)

// The acceptance run, on a 3-member cluster with a 2 s TTL:
//
//   - 10 members over 256 shards converge: every shard owned by exactly
//     one live member, each within one of its share;
//   - 2 members join: the shards moved (works started) stay within 1.25
//     times the ideal, 256 × 2/12;
//   - 3 members are killed: two cut off from etcd (their proxies
//     blackholed: alive, still running, and they must stop working on
//     their shards before anyone else starts), and one crashed (its work
//     ends at once, as a dead process's does, and its lease is revoked):
//     every shard is owned again within TTL + 1 s;
//
// and throughout, the overlap detector over every work function never
// sees two members work on one shard at once, nor a token that does not
// increase.
func TestTenMembersOverAClusterJoinAndKill(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	const ttl = 2 * time.Second
	f := newFleet(t, c.Endpoints(), c.Client(), 256, ttl)
	for i := range 10 {
		f.start(fmt.Sprintf("m%d", i), i >= 7)
	}
	d := f.waitState(true, 60*time.Second)
	t.Logf("10 members over 256 shards: converged %v after the last member started (%d works started)", d.Round(time.Millisecond), f.rec.Starts())

	// Join two.
	before := f.rec.Starts()
	joined := time.Now()
	f.start("n0", false)
	f.start("n1", false)
	d = f.waitState(true, 30*time.Second)
	moved := f.rec.Starts() - before
	ideal := 256.0 * 2 / 12
	t.Logf("2 joined: %d shards moved (ideal %.1f, ratio %.2f), converged in %v", moved, ideal, float64(moved)/ideal,
		time.Since(joined).Round(time.Millisecond))
	if float64(moved) > 1.25*ideal {
		t.Errorf("joining 2 members moved %d shards, over 1.25 × the ideal %.1f", moved, ideal)
	}

	// Kill three.
	cut := []*member{f.forget("m7"), f.forget("m8")}
	crashed := f.forget("m9")
	killed := time.Now()
	for _, m := range cut {
		m.px.Blackhole()
	}
	f.rec.kill("m9")
	if _, err := c.Client().Revoke(ctxT(t, 5*time.Second), crashed.s.Lease()); err != nil {
		t.Fatal(err)
	}
	owned := f.waitState(false, 15*time.Second)
	t.Logf("3 killed (2 cut off, 1 crashed): every shard owned again after %v", owned.Round(time.Millisecond))
	if owned > ttl+time.Second {
		t.Errorf("shards owned again %v after the kill, over TTL + 1s = %v", owned, ttl+time.Second)
	}
	f.waitState(true, 15*time.Second)
	t.Logf("balanced over the 9 left %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, m := range cut {
		err, ok := m.wait(10 * time.Second)
		if !ok || !errors.Is(err, session.ErrExpired) {
			t.Errorf("cut-off member %s: Run returned %v, want session.ErrExpired", m.id, err)
		}
		m.px.Restore()
	}
	f.rec.check(t)
	t.Logf("work contexts ended by cause: %v", f.rec.causes())
}
