package election_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkElection is the leadership handed over by Resign and by a
// revoked session among 4 candidates, and an uncontended Campaign, side
// by side with etcd's concurrency.Election.
func BenchmarkElection(b *testing.B) {
	bench.Benchmark(b, bench.Election(4), bench.Failover(4), bench.Campaign())
}
