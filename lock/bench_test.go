package lock_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkMutex is Lock+Unlock cycles with 1 (uncontended), 2, 4 and 16
// contenders, side by side with etcd's concurrency.Mutex, with the
// physical floor of a handoff for scale.
func BenchmarkMutex(b *testing.B) {
	bench.Benchmark(b, bench.Floor(), bench.Lock(1), bench.Lock(2), bench.Lock(4), bench.Lock(16))
}

// BenchmarkMutexHandoffLine is a handoff with 0, 1,000 and 10,000 waiters
// behind, in another process: its cost must not grow with the line. The
// last case parks the 10,000 in the benchmark's own process, to show what
// following them costs a process.
func BenchmarkMutexHandoffLine(b *testing.B) {
	bench.Benchmark(b, bench.LockBehind(0), bench.LockBehind(1000), bench.LockBehind(10000), bench.LockBehindHere(10000))
}

// BenchmarkMutexHandoffInterleaved is BenchmarkMutexHandoffLine's three
// lengths set up at once and taking turns, one handoff each in rotation,
// so that the ratios between lengths come from one run on one disk.
func BenchmarkMutexHandoffInterleaved(b *testing.B) {
	bench.BenchmarkLines(b, []bench.Line{bench.LockLine("coord"), bench.LockLine("etcd")}, 0, 1000, 10000)
}

// BenchmarkMutexOfFloor is the contended Mutex and the floor in
// alternating rounds, so that "of floor" compares the same minutes of the
// disk.
func BenchmarkMutexOfFloor(b *testing.B) {
	bench.BenchmarkOfFloor(b, bench.Lock(4), bench.Lock(16), bench.Election(4), bench.Semaphore(4, 16))
}
