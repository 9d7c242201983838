// Package wait is the one way coord's primitives wait for etcd state to
// change. Every wait opens its watches from "now" and asks the server to
// confirm them, so they are synced from the start: etcd serves a watch
// that starts at an older revision from its "unsynced" set, which it
// catches up only every 100 ms, and that resync is what limits etcd's own
// Mutex to a few dozen handoffs a second. A wait never assumes its
// condition from a watch ending: after a compaction, a closed stream, a
// reconnect or a member failover it re-reads the state and goes on.
//
// # Safety
//
// A wait ends with nil only after a read of etcd showed its condition met;
// a watch that ends, is compacted or loses its leader only causes a
// re-read. Waits end early with the stopper's error (the session lost, the
// own key deleted) or the context's. Every function is safe for concurrent
// use; a Hold belongs to the one acquisition that made it.
package wait
