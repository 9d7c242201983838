// Package watch is coord's one waiting core: how every primitive of a
// process follows etcd. A Hub holds, per etcd client, one Feed (one etcd
// watch) per watched range, shared by every waiter and holder of the
// process, and Mirrors built on feeds: the process's copy of one
// primitive's keys, kept exact at its revision, in which a waiter's rule
// (first in line, fits the capacity) is judged locally, in O(log n), so a
// handoff is the holder's write and one watch event, with no read.
// Waitlists wake exactly the waiters a change lets through; Until is the
// read-after-event wait for primitives whose state is not a line
// (barriers, latches); MirrorOf and RangeOf watch one held key for loss.
//
// Every watch opens from "now" and waits for the server to confirm it, so
// it is synced from the start: etcd serves a watch that starts at an older
// revision from its "unsynced" set, which it catches up only every 100 ms,
// and that resync is what holds etcd's own Mutex to a few dozen handoffs a
// second.
//
// # Safety
//
// A mirror is never trusted across a gap: after a compaction, a broken
// stream, a member without a leader or a failover, its feed reopens from
// now and the mirror reloads the whole range before it answers again. A
// closed client or a refused watch ends every feed, mirror, wait and
// watched hold of it at once with that error (never a spin on closed
// channels, never a silent retry of a refusal). The costs: a mirror holds
// the keys of its range once per process (never per waiter), and every
// process following a line receives that line's events. Everything here
// is safe for concurrent use.
package watch
