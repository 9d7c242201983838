package barrier_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkBarrier is a Release waking a blocked Wait, and double-barrier
// rounds of 3, side by side with etcd's recipes.
func BenchmarkBarrier(b *testing.B) {
	bench.Benchmark(b, bench.Barrier(), bench.DoubleBarrier(3))
}
