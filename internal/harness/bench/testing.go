package bench

import (
	"context"
	"fmt"
	"math"
	"os"
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
