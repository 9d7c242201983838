package schedule_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkSchedule runs a 100 ms schedule on 3 and 5 replicas, side by
// side with the hand-made TryLock-and-last-tick loop on etcd's
// concurrency.Mutex: lateness p50/p99 and RPCs per tick. (Against gocron
// with coord's Locker: BenchmarkTicks in contrib/gocron.)
func BenchmarkSchedule(b *testing.B) {
	bench.Benchmark(b, bench.Schedule(3), bench.Schedule(5))
}
