package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// duration is how long each side of each case runs under go test -bench:
// COORD_BENCH_DURATION, or 2 s.
func duration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("COORD_BENCH_DURATION")); err == nil && d > 0 {
		return d
	}
	return 2 * time.Second
}

// Benchmark runs cases as sub-benchmarks, coord's side and etcd's side by
// side ("<case>/coord", "<case>/etcd"), each once for COORD_BENCH_DURATION
// (default 2 s) on one fsynced embedded server shared by the whole test
// binary. It reports ops/s, p50-ms, p99-ms, rpcs/op, bytes/op and
// fsyncs/op (the server's WAL fsyncs per operation); ns/op
// is the wall time of the whole run and means nothing here. The package
// benchmarks of coord are thin wrappers over it, so `go test -bench` and
// `coord bench` measure the same code.
func Benchmark(b *testing.B, cases ...Case) {
	// One server for every Benchmark of the test binary (etcdtest.Shared:
	// fsync on, as in production, closed by etcdtest.Main), so coord and
	// etcd are measured on the same disk in the same run.
	benchSrv, err := etcdtest.Shared()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		for _, side := range []struct {
			name string
			r    runner
		}{{"coord", c.coord}, {"etcd", c.etcd}} {
			if side.r == nil {
				continue
			}
			b.Run(c.Primitive+"/"+c.Name+"/"+side.name, func(b *testing.B) {
				var res Result
				for b.Loop() {
					env := &Env{endpoints: benchSrv.Endpoints(), root: "coord-bench/go-test/"}
					var err error
					res, err = side.r(context.Background(), env, duration())
					env.close()
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(res.OpsPerSec(), "ops/s")
				b.ReportMetric(float64(res.P50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(res.RPCsPerOp(), "rpcs/op")
				if s := res.SyncsPerOp(); !math.IsNaN(s) {
					b.ReportMetric(s, "fsyncs/op")
				}
				b.ReportMetric(res.BytesPerOp(), "bytes/op")
			})
		}
	}
}

// BenchmarkLines runs Interleaved for each line ("<primitive>/<side>"),
// one run each on the shared server, and reports each length's p50 and
// p99 ("p50-ms-at-1000"), RPCs per operation ("rpcs/op-at-1000"), and each
// length's p50 and p99 over those of the first length given
// ("p50-ratio-at-1000"): the numbers the cost-does-not-grow-with-the-line
// target is judged by, from one run.
func BenchmarkLines(b *testing.B, lines []Line, lengths ...int) {
	benchSrv, err := etcdtest.Shared()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range lines {
		b.Run(line.Primitive+"/"+line.Side, func(b *testing.B) {
			var res []Result
			for b.Loop() {
				var err error
				res, err = Interleaved(context.Background(), benchSrv.Endpoints(), line, lengths, duration())
				if err != nil {
					b.Fatal(err)
				}
			}
			for i, n := range lengths {
				r := res[i]
				b.ReportMetric(float64(r.P50.Microseconds())/1000, fmt.Sprintf("p50-ms-at-%d", n))
				b.ReportMetric(float64(r.P99.Microseconds())/1000, fmt.Sprintf("p99-ms-at-%d", n))
				b.ReportMetric(r.RPCsPerOp(), fmt.Sprintf("rpcs/op-at-%d", n))
				b.ReportMetric(r.BytesPerOp(), fmt.Sprintf("bytes/op-at-%d", n))
				if i > 0 {
					b.ReportMetric(float64(r.P50)/float64(res[0].P50), fmt.Sprintf("p50-ratio-at-%d", n))
					b.ReportMetric(float64(r.P99)/float64(res[0].P99), fmt.Sprintf("p99-ratio-at-%d", n))
				}
			}
			if s := res[0].SyncsPerOp(); !math.IsNaN(s) {
				b.ReportMetric(s, "fsyncs/op")
			}
		})
	}
}

// Alternate runs the coord side of each case in turn, rounds times for
// d/rounds each, starting each round one case further on, and sums each
// case's rounds: with the floor among the cases, every rate is then set
// against a floor measured over the same minutes of a drifting disk, not
// once before them. The sums carry no latencies (percentiles of separate
// rounds do not add up).
func Alternate(ctx context.Context, endpoints []string, cases []Case, rounds int, d time.Duration) ([]Row, error) {
	root := fmt.Sprintf("coord-bench/%d/", time.Now().UnixNano())
	rows := make([]Row, len(cases))
	for i, c := range cases {
		rows[i].Case = c
	}
	for r := range rounds {
		for k := range cases {
			i := (r + k) % len(cases)
			env := &Env{endpoints: endpoints, root: root}
			res, err := cases[i].coord(ctx, env, d/time.Duration(rounds))
			env.close()
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", cases[i].Primitive, cases[i].Name, err)
			}
			sum := &rows[i].Coord
			sum.Ops += res.Ops
			sum.Elapsed += res.Elapsed
			sum.RPCs += res.RPCs
			sum.Bytes += res.Bytes
			sum.Syncs += res.Syncs
		}
	}
	return rows, nil
}

// BenchmarkOfFloor runs Alternate over the floor and cases (6 rounds of
// COORD_BENCH_DURATION/6 each) on the shared server, and reports each
// case's ops/s, its fraction of the floor's rate over the same rounds
// ("of-floor"), and its RPCs and fsyncs per operation.
func BenchmarkOfFloor(b *testing.B, cases ...Case) {
	benchSrv, err := etcdtest.Shared()
	if err != nil {
		b.Fatal(err)
	}
	var rows []Row
	for b.Loop() {
		rows, err = Alternate(context.Background(), benchSrv.Endpoints(), append([]Case{Floor()}, cases...), 6, duration())
		if err != nil {
			b.Fatal(err)
		}
	}
	floor := rows[0].Coord.OpsPerSec()
	b.ReportMetric(floor, "floor-ops/s")
	for _, r := range rows[1:] {
		slug := strings.Map(func(c rune) rune {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
				return c
			case c == ' ':
				return '-'
			}
			return -1
		}, r.Primitive+" "+r.Name)
		b.ReportMetric(r.Coord.OpsPerSec(), "ops/s-"+slug)
		b.ReportMetric(r.Coord.OpsPerSec()/floor, "of-floor-"+slug)
		if s := r.Coord.SyncsPerOp(); !math.IsNaN(s) {
			b.ReportMetric(s, "fsyncs/op-"+slug)
		}
	}
}
