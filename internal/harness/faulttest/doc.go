// Package faulttest is coord's fault suite: it runs every primitive on a
// 3-member embedded etcd cluster, each client behind its own loopback
// fault proxy, injects faults (pauses, partitions, slow and ambiguous
// replies, member kills, leader moves and isolation, compaction storms,
// lease revocations), records every operation, and checks safety
// invariants exactly from etcd's own revision order.
//
// Every process shares one session among all its workers, as the README
// advises: its holds of every kind, its queue Consume pool, and a worker
// that holds a lock, a permit and a leadership at once (multi_test.go). The
// lock, election and queue histories are also checked by Porcupine, an
// outside linearizability checker, against a fenced register and an
// at-least-once queue (porcupine.go). TestBrokenVariantsAreCaught proves
// that both our checks and Porcupine fail broken variants.
//
// Beside the scenarios: TestWholeClusterCrash kills every member at once
// mid-workload and restarts the cluster from its data directories
// (crashcheck_test.go), and TestNoSpace fills a server to its backend quota and
// tries every primitive under the NOSPACE alarm and after it is cleared.
//
// The suite lives in this package's tests. By default every scenario runs
// briefly (a few seconds each, as CI does; under -short only the crash
// and NOSPACE tests run). For long runs:
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
//
// The soak: every scenario, with random seeds, in-process and against
// real processes (with the whole-cluster SIGKILL crash), over and over
// for a given time, ending with one summary table:
//
//	internal/harness/faulttest/soak.sh 1h
package faulttest
