// Package harness holds coord's test harnesses, apart from the core they
// exercise: bench (the side-by-side benchmarks behind `coord bench` and
// every package's Benchmark functions), benchutil (latency percentiles
// and benchmark metrics) and faulttest (the fault suite). Nothing in the
// library imports them.
//
// # Safety
//
// Harnesses run only in tests, benchmarks and `coord bench`: they make
// sessions and keys of their own under prefixes of their own, and remove
// them when they are done.
package harness
