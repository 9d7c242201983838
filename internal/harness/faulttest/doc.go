// Package faulttest is coord's fault suite: it runs every primitive on a
// 3-member embedded etcd cluster, each client behind its own loopback
// fault proxy, injects faults (pauses, partitions, slow and ambiguous
// replies, member kills, leader moves and isolation, compaction storms,
// lease revocations), records every operation, and checks safety
// invariants exactly from etcd's own revision order.
//
// The suite lives in this package's tests. By default every scenario runs
// briefly (a few seconds each, as CI does). For long runs:
//
//	COORD_FAULT_DURATION=2m COORD_FAULT_SEED=0 go test -race -run TestFaults ./internal/harness/faulttest/ -v -timeout 2h
//
// COORD_FAULT_SEED=0 draws a fresh seed per scenario; a failure prints the
// seed and the recorded history so the run can be repeated with that seed.
//
// Against real etcd server processes (built from the module's own etcd
// version), adding a scenario that SIGSTOPs members:
//
//	internal/harness/faulttest/run-processes.sh
package faulttest
