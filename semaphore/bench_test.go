package semaphore_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkSemaphore is Acquire+Release cycles, uncontended and with 16
// contenders, beside etcd's Mutex (a semaphore of capacity 1).
func BenchmarkSemaphore(b *testing.B) {
	bench.Benchmark(b, bench.Semaphore(4, 1), bench.Semaphore(4, 16), bench.Semaphore(1, 16))
}

// BenchmarkSemaphoreLine is an Acquire with free permits with 0, 1,000
// and 10,000 permits held in the line: its cost must not grow with it.
func BenchmarkSemaphoreLine(b *testing.B) {
	bench.Benchmark(b, bench.SemaphoreInLine(0), bench.SemaphoreInLine(1000), bench.SemaphoreInLine(10000))
}

// BenchmarkSemaphoreLineInterleaved is BenchmarkSemaphoreLine's three
// lengths set up at once and taking turns, one Acquire each in rotation,
// so that the ratios between lengths come from one run on one disk.
func BenchmarkSemaphoreLineInterleaved(b *testing.B) {
	bench.BenchmarkLines(b, []bench.Line{bench.SemaphoreLine()}, 0, 1000, 10000)
}
