package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/bench"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestRun runs every case briefly and checks that both sides did work,
// were counted, and made it into the table.
func TestRun(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cases := bench.Cases()
	// Long enough for a few handoffs of every case on a loaded 2-core
	// machine under -race (150 ms sometimes saw none).
	rows, err := bench.Run(context.Background(), srv.Endpoints(), 400*time.Millisecond, cases, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(cases) {
		t.Fatalf("%d rows for %d cases", len(rows), len(cases))
	}
	for _, r := range rows {
		for side, res := range map[string]bench.Result{"coord": r.Coord, "etcd": r.Etcd} {
			if side == "etcd" && r.Case.Etcd == "" {
				continue // the floor has no etcd side
			}
			if res.Ops == 0 || res.RPCs == 0 || res.OpsPerSec() <= 0 || res.P99 < res.P50 || res.P50 <= 0 {
				t.Errorf("%s %s, %s: %+v", r.Primitive, r.Name, side, res)
			}
		}
	}
	var b strings.Builder
	bench.Table(&b, rows)
	if got := strings.Count(b.String(), "\n"); got != len(rows)+2 {
		t.Errorf("table has %d lines, want %d:\n%s", got, len(rows)+2, b.String())
	}
	// Every run's keys are removed afterwards.
	resp, err := srv.Client().Get(context.Background(), "coord-bench/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys left under coord-bench/", resp.Count)
	}
}

// TestScalingCasesRun runs the scaling cases at small lengths: each side
// did work and was counted.
func TestScalingCasesRun(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds of setup")
	}
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cases := append(bench.ScalingCases(0, 20), bench.LockBehindHere(20), bench.Failover(3), bench.Campaign(), bench.DoubleBarrier(3))
	rows, err := bench.Run(context.Background(), srv.Endpoints(), 150*time.Millisecond, cases, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Coord.Ops == 0 || r.Coord.RPCs == 0 {
			t.Errorf("%s %s, coord: %+v", r.Primitive, r.Name, r.Coord)
		}
		if r.Case.Etcd != "" && r.Etcd.Ops == 0 && r.Etcd.Note == "" {
			t.Errorf("%s %s, etcd: %+v", r.Primitive, r.Name, r.Etcd)
		}
	}
	var b strings.Builder
	bench.Table(&b, rows)
	t.Log("\n" + b.String())
}

// TestFloorSyncs checks the fsync count on an fsynced server: a floor step
// waits for its one write before the next is made, so the server makes
// exactly one fsync per step, and the column that explains every row's
// distance from the floor reads what the server did.
func TestFloorSyncs(t *testing.T) {
	srv := etcdtest.NewServer(t)
	rows, err := bench.Run(context.Background(), srv.Endpoints(), 300*time.Millisecond, []bench.Case{bench.Floor(), bench.Lock(2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := rows[0].Coord.SyncsPerOp(); s < 0.95 || s > 1.1 {
		t.Errorf("floor: %.2f fsyncs per step (%+v), want 1", s, rows[0].Coord)
	}
	// A contended cycle writes twice (the enqueue, the release): one
	// fsync each unless the server happens to batch them, never less
	// than one per cycle.
	if s := rows[1].Coord.SyncsPerOp(); s < 1 || s > 2.5 {
		t.Errorf("lock, 2 contenders: %.2f fsyncs per cycle (%+v), want 1 to 2", s, rows[1].Coord)
	}
}

// TestInterleaved runs each interleaved line at small lengths: every
// length made its measured operations at a flat RPC count (a coord
// handoff is the holder's one Delete; an Acquire + Release and a Claim +
// Ack are two Txns), and every key is gone afterwards.
func TestInterleaved(t *testing.T) {
	if testing.Short() {
		t.Skip("several seconds of setup")
	}
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	for _, c := range []struct {
		line bench.Line
		rpcs float64 // 0: not checked
	}{
		{bench.LockLine("coord"), 1},
		{bench.LockLine("etcd"), 0},
		{bench.SemaphoreLine(), 2},
		{bench.ClaimLine(), 2},
	} {
		name := c.line.Primitive + "/" + c.line.Side
		res, err := bench.Interleaved(context.Background(), srv.Endpoints(), c.line, []int{0, 20}, 100*time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(res) != 2 {
			t.Fatalf("%s: %d results for 2 lengths", name, len(res))
		}
		for i, r := range res {
			if r.Ops != 50 || r.P50 <= 0 || r.P99 < r.P50 || r.Elapsed <= 0 {
				t.Errorf("%s, length %d: %+v", name, i, r)
			}
			if c.rpcs > 0 && (r.RPCsPerOp() < c.rpcs || r.RPCsPerOp() > c.rpcs*1.1) {
				t.Errorf("%s, length %d: %.2f RPCs per operation, want %.0f", name, i, r.RPCsPerOp(), c.rpcs)
			}
		}
	}
	resp, err := srv.Client().Get(context.Background(), "coord-bench/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys left under coord-bench/", resp.Count)
	}
}
