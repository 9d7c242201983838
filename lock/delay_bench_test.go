package lock_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkMutexLockDelay is Lock+Unlock cycles with a lock-delay on,
// uncontended and with 4 contenders, side by side with the same without
// one: with only clean handoffs it must cost nothing more.
func BenchmarkMutexLockDelay(b *testing.B) {
	bench.Benchmark(b, bench.LockDelay(1), bench.LockDelay(4))
}
