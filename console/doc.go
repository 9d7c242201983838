// Package console is a live web page of coord's state under one root:
// every lock, read-write lock, election, semaphore, barrier, double
// barrier, latch, queue, schedule, rate limit, group and shard map in use,
// with their holders (fencing token, owner host:pid, held since), waiters
// in line order, leaders and candidates, permits in use, queue depths by
// state and dead letters with their reasons. It is an http.Handler to
// mount in a service, like net/http/pprof, and `coord ui` runs it on its
// own.
//
// The page is server-rendered HTML (html/template, assets embedded) and
// works as a static page without JavaScript; its one small script keeps
// it live through server-sent events.
//
// # Cost
//
// A console follows its root with one etcd watch (the process's shared
// feed of the root, see internal/watch), started at its first request.
// The watch feeds a cache; after a change (bursts gathered for 100 ms) it
// re-reads only the primitives the change touched, through package
// inspect: a read of the sessions' owners, the primitive's keys (for a
// queue, its counts and claims, never its payloads) and its first dead
// letters when those changed; no lease is read (the page shows no TTL).
// A change that touched more than 64 primitives re-reads the root once
// instead, and a primitive of many keys is re-read at most a page (512
// keys) per 100 ms: a lock with 3,000 in line that changes all the time
// costs 7 Ranges every 600 ms, not every 100 ms. Pages,
// fragments and event streams are served from the cache: a viewer costs
// etcd nothing, and a change costs the same reads whether one viewer
// watches or a hundred. Lists are cut to WithRows (default 20) with
// "and N more".
//
// # Safety
//
// By default a console is read-only: it shows no action and refuses
// every POST with 403 (ErrReadOnly). WithActions(true) lets whoever can
// reach the page re-drive or discard a dead letter, pause, resume or
// trigger a schedule, and force-release a lock, permit or leadership by
// revoking its holder's lease, which ends that holder's whole session:
// everything it holds under every name is released at once, and the
// holder learns of it only when its session notices the lease is gone
// (fencing tokens keep its late writes out). A force release and a
// discard ask for confirmation first, refuse a holder that changed since
// the page showed it, and every action is an audit line on the logger
// (WithLogger) naming who, what, and which key and token. Actions are
// POST forms checked for the same origin (http.CrossOriginProtection)
// and a per-console token; the page cannot be framed. The console has no
// authentication of its own: mount it behind yours, or keep it on
// loopback, as `coord ui` does by default. What it shows is a snapshot a
// few hundred milliseconds old at most: never decide who holds a lock
// from it. A Console is safe for concurrent use.
package console
