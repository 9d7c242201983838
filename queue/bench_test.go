package queue_test

import (
	"testing"

	"github.com/coord-go/coord/internal/harness/bench"
)

// BenchmarkQueue is Enqueue and claim + ack with 1, 4 and 8 consumers,
// side by side with etcd's recipe Queue.
func BenchmarkQueue(b *testing.B) {
	bench.Benchmark(b, bench.Enqueue(), bench.Claim(1), bench.Claim(4), bench.Claim(8))
}

// BenchmarkQueueWorkers is the throughput table: one Claim+Ack at a
// time per consumer against Consume pools of 1, 4 and 8 workers, one
// message a Txn and batches of 16 and 32, and EnqueueBatch against Enqueue, each
// side by side with etcd's recipe Queue.
func BenchmarkQueueWorkers(b *testing.B) {
	bench.Benchmark(b, bench.Enqueue(), bench.EnqueueBatch(32, 1), bench.EnqueueBatch(64, 1), bench.EnqueueBatch(64, 4),
		bench.Claim(1), bench.Claim(8),
		bench.Consume(1, 1), bench.Consume(4, 1), bench.Consume(8, 1),
		bench.Consume(4, 16), bench.Consume(8, 16), bench.Consume(8, 32))
}

// BenchmarkQueueLine is claim + ack with 0, 1,000 and 10,000 claims in
// flight, and one message with 1, 4 and 16 idle consumers in a process:
// neither may cost more as the numbers grow.
func BenchmarkQueueLine(b *testing.B) {
	bench.Benchmark(b, bench.ClaimInFlight(0), bench.ClaimInFlight(1000), bench.ClaimInFlight(10000),
		bench.IdleConsumers(1), bench.IdleConsumers(4), bench.IdleConsumers(16))
}

// BenchmarkQueueLineInterleaved is BenchmarkQueueLine's claim lengths set
// up at once and taking turns, one Claim + Ack each in rotation, so that
// the ratios between lengths come from one run on one disk.
func BenchmarkQueueLineInterleaved(b *testing.B) {
	bench.BenchmarkLines(b, []bench.Line{bench.ClaimLine()}, 0, 1000, 10000)
}
