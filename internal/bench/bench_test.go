package bench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/bench"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestRun runs every case briefly and checks that both sides did work,
// were counted, and made it into the table.
func TestRun(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cases := bench.Cases()
	rows, err := bench.Run(context.Background(), srv.Endpoints(), 150*time.Millisecond, cases, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(cases) {
		t.Fatalf("%d rows for %d cases", len(rows), len(cases))
	}
	for _, r := range rows {
		for side, res := range map[string]bench.Result{"coord": r.Coord, "etcd": r.Etcd} {
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
