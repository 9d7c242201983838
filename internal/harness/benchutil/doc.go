// Package benchutil holds what coord's side-by-side benchmarks share:
// latency samples with percentiles, and reporting them (with RPCs per
// operation from an etcdtest.Counter) as benchmark metrics.
//
// # Safety
//
// Latencies is safe for concurrent use. Report only formats numbers; it
// measures nothing itself.
package benchutil
