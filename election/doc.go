// Package election elects one leader among candidates for a name, on
// etcd, with leadership you can trust: a candidate is told it leads only
// after its key was seen alive and first while its session lived, and it
// is told the moment it stops leading.
//
// Candidates queue in the order they campaign (by the create revision of
// their keys). A waiting candidate waits on its process's one mirror of
// the candidates, so a resignation hands the leadership over with the
// leader's delete and one watch event, and wakes only the next candidate.
// Run wraps it all in the loop a service embeds: campaign, work while
// leading, campaign again.
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
// its key. A clean Resign is never reported as a lost leadership. Observe
// never reports a leader that is not current: after a compaction or
// reconnect it reloads the candidates. A refused permission ends Run at
// once with the error, and closes an Observe channel early (logged at
// error level), instead of being retried silently.
//
// An Election is safe for concurrent use but runs one Campaign at a
// time; use one Election per candidate.
package election
