// Package shard spreads the shards of a map (N numbered shards, or a set
// of named ones: tenants, streams, key ranges) over the live members of a
// group, and gives each shard to one member at a time, with a fencing
// token, so replicas can split work the way Google's Slicer and Uber's
// Ringpop let them, on nothing but etcd.
//
// A process joins a group (package group), makes the map with New and
// calls Run with the work to do for each shard it owns: Run calls work in
// a goroutine per owned shard, with a context that ends when the shard
// must go. Every member plans alike from what it sees, with no leader and
// no messages: each member's share follows its weight, a shard stays with
// its owner unless the owner is over its share, and what moves goes to
// the member under its share that scores it highest (rendezvous hashing).
// So a join moves exactly the shards the newcomer's share takes, a leave
// exactly the leaver's, and every member ends within one shard of its
// share. Owner tells a router which member owns a shard; an Observer does
// the same without a session.
//
// # Safety
//
// A shard's ownership is a key of its own, created only while absent, on
// the owner's session lease: two members never own a shard at once, and
// each ownership has a fencing token (Shard.Token, the key's create
// revision) that increases with every owner; guard writes in etcd with
// Shard.IsOwner and writes elsewhere with the token. A handoff drains:
// the owner's work context is cancelled (ErrMoved), work returns, the key
// is deleted, and only then can the next owner create it. A crashed
// owner's shards move once its lease expires, after its TTL. An owner
// cut off from etcd learns of the loss when its session's deadline
// passes, which is before the server can expire its lease and so before
// anyone else can be given its shards; its work's context is cancelled
// then, with ErrLost. (An owner whose lease is revoked or whose key is
// deleted by hand learns of it from a watch event, as everyone else does,
// so only the token fences it in that moment; a paused process is fenced
// by the token alone.) A Map, Shard and Observer are safe for concurrent
// use.
package shard
