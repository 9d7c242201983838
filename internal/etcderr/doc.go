// Package etcderr sorts the errors etcd returns into what coord does with
// them: retry (a leader change, an unreachable member), stop and report
// (a refused permission, a failed authentication, a closed client), or
// pass on. Every primitive asks here, so one place decides which failures
// are worth a silent retry and which must reach the caller at once.
//
// # Safety
//
// A refused permission is never retried: retrying it only hides a
// misconfigured role until some context runs out (election.Run once spent
// its whole context retrying a read-only user's campaign without a log
// line). Everything here is pure classification, safe for concurrent use.
package etcderr
