// Package election elects one leader among candidates for a name, on
// etcd, with leadership you can trust: a candidate is told it leads only
// after a read has shown its key alive and first while its session lived,
// and it is told the moment it stops leading.
//
// Candidates queue in the order they campaign (by the create revision of
// their keys); each waits on its immediate predecessor alone, so a
// resignation wakes exactly one candidate. Run wraps it all in the loop a
// service embeds: campaign, work while leading, campaign again.
//
// # Safety
//
// Leadership lives on the candidate's session lease. It is lost when the
// session ends (see session.Session.Done, which fires before the server
// can expire the lease and elect someone else), when the leader key is
// deleted, or on Resign; Done closes then, and Run cancels fn's ctx.
// A process paused longer than its TTL cannot notice in time, so every
// leadership has a fencing token (Token, TokenFrom), the create revision
// of its key, strictly increasing across leaders of one name: guard
// writes in etcd with IsOwner, and writes elsewhere with the token.
//
// Campaign, Proclaim and Resign are fenced on the key's create revision,
// so each is safe to retry, and a failed or cancelled Campaign deletes
// its key. Observe never reports a leader that is not current: after a
// compaction or reconnect it resumes its watch or re-reads.
//
// An Election is safe for concurrent use but runs one Campaign at a
// time; use one Election per candidate.
package election
