// Package gocron gives github.com/go-co-op/gocron/v2 a distributed
// Locker and Elector backed by coord, for programs that already schedule
// with gocron. It is a module of its own, so programs that use coord
// without gocron never download or compile gocron. Its name is gocron's,
// so import it under another:
//
//	import coordgocron "github.com/coord-go/coord/contrib/gocron"
//
// # What each promises
//
// Locker (gocron.WithDistributedLocker) takes a coord lock, named after
// the job, for each run, and gocron skips the run on every replica that
// finds the lock taken. It promises that no two runs of a job overlap
// anywhere in the fleet, each run fenced by its lock's token (Held). It
// cannot promise one run per tick: each replica's scheduler fires on its
// own clock, so a replica that fires a few milliseconds after another has
// finished a short run takes the lock too and runs the tick again, and a
// replica whose clock lags takes a tick that was run already
// (go-co-op/gocron#841). Jobs under a Locker must be idempotent per tick.
//
// Elector (gocron.WithDistributedElector) makes only the replica that
// leads a coord election run jobs. While leadership is stable that is one
// run per tick, on the leader's clock. At a handover it is not: gocron asks
// IsLeader only when a run starts and never stops one, so a run begun by
// the old leader can still be going when the new leader's runs start, and
// ticks that fall between the old leader's loss and the new leader's
// election are not run. Fence with Token.
//
// For exactly one start per tick across replicas with skewed clocks,
// late starters and crashes, with catch-up, overlap and crash policies,
// use package github.com/coord-go/coord/schedule instead: it claims each
// tick by a compare-and-swap in etcd rather than by a lock.
//
// # Safety
//
// A Locker's lock lives on its session: if the session ends during a run,
// the lock is lost and another replica may run the job; Held(job).Done()
// closes then, and the job should stop and fence its writes with
// Held(job).Token() or IsOwner(). An Elector's IsLeader answers from the
// leadership it holds now, which ends with its election session; Token
// is the leadership's fencing token, 0 while not leading. Locker and
// Elector are safe for concurrent use.
package gocron
