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

// BenchmarkHandover is the leadership moved among 4 replicas of Run: to a
// chosen candidate by a transfer request, and to the next in line when
// the leader's fn returns; etcd's side is Resign to the next Campaign.
func BenchmarkHandover(b *testing.B) {
	bench.Benchmark(b, bench.Transfer(4), bench.RunHandover(4))
}
