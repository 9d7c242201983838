// Package group keeps a named group of live members on etcd: who is
// alive, with what metadata (an address, a zone, a version), and every
// change, as Curator's GroupMember does for ZooKeeper.
//
// A process joins with an id and metadata (Join); its membership lives on
// its session's lease, so a crashed member leaves the group when its TTL
// runs out, and one that calls Leave, or closes its session, leaves at
// once. Members reads the group now; Watch follows it, sending a full,
// revision-stamped View after every change; Lookup finds one member
// without a round trip, for routing. Ids are unique among the live
// members: a second Join with a live member's id fails with ErrDuplicate.
// Package shard spreads work over a group's members.
//
// # Safety
//
// A membership ends when its session does (Done closes first: before the
// server can expire the lease and so before another process could join
// under its id), when its key is deleted, or on Leave; a Leave is never
// reported as a loss. The membership's Token, its key's create revision,
// grows with every join, and IsOwner guards Txns of your own on the
// membership still being this one. SetMeta and Leave are fenced on the
// key being this membership's, so a retry can never touch a later member
// of the same id. A View is exact at its revision; Watch never reports a
// member that is not current, and after a gap in its watch (a compaction,
// a reconnect, a failover) it reloads and reports every join and leave
// across it. Membership, Group and View values are safe for concurrent
// use (a View's maps are copies, the caller's to keep).
package group
