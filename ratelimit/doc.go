// Package ratelimit is golang.org/x/time/rate for a fleet: a rate limit
// shared by every process that uses the same name, with a hard cap. In
// no window of the interval, anywhere on the timeline, do all the
// processes together get more than limit + burst events; not on average,
// in every window.
//
// # The algorithm, and why
//
// The timeline is cut into epochs shared by every process (their start
// and length are stored with the limit): q epochs cover an interval, and
// every q+1 consecutive epochs hold limit + burst permits between them,
// spread as evenly as integers allow. An event is granted only inside
// its permit's epoch, so a window of the interval, which meets at most
// q+1 consecutive epochs, can never hold more than limit + burst. This
// is a fixed budget per epoch rather than a token bucket or GCRA because
// a budget per epoch can be handed out in batches ahead of time without
// any risk: a permit of epoch k is good only in epoch k, wherever and
// whenever it was reserved, whereas a token taken from a bucket ahead of
// time is a token that may be spent at any moment later, which is how
// distributed token buckets overshoot. A sliding-window log would be
// exact too but costs a write per event. The price of epochs is that the
// sustained rate is q·(limit+burst)/(q+1) per interval: exactly the limit
// when the burst divides it (and limit/burst ≤ 64), never less than 75%
// of it, above 94% for bursts up to a quarter of the limit; State.Rate
// tells it. q is chosen as large as the burst allows (every epoch must
// hold a whole burst), at most 64, with epochs no shorter than a
// millisecond or twice the clock skew.
//
// # Cost
//
// The shared state is one key, rewritten with a compare-and-swap on its
// mod revision: a process reserves a batch of permits (spread over the
// epochs ahead, as its measured demand says) in one Txn, and its callers
// spend them locally with no RPC; permits it no longer needs go back in
// one Txn when its demand falls. So etcd writes scale with reservations,
// not events. The key's size is bounded by the epochs ahead (at most 64
// per limit), not by the processes. The callers of a process share one
// mirror of the limiter's keys (one watch); a limiter with no demand
// has given everything back and has no goroutine, no timer, no watch,
// and makes no RPC.
//
// # Fairness
//
// A process may hold at most its share of the permits not yet granted:
// the permits of the horizon (one interval ahead by default, see
// WithHorizon) over the number of processes holding permits. A process
// under heavy demand therefore cannot take what a light one needs: once
// the heavy ones have spent what they hold beyond their share, the light
// one finds its share free, so its first wait is at most about a horizon
// and it is then served like every other. Within a process, callers are
// served first come, first served.
//
// # The limit
//
// The limit (events per interval), the burst and the clock skew are
// stored with the limiter by its first user. A Limiter made with others
// gets ErrLimitMismatch, since two deployments disagreeing about a limit
// is a bug to surface, not to paper over. SetLimit and SetBurst change it
// for everyone: the old epochs end after the last one holding
// reservations, and the new ones start after a short gap, so that a
// window before the change obeys the old cap, one after it the new cap,
// and one across it the larger of the two.
//
// # Clocks
//
// Every process reads its own clock to know which epoch it is in, so the
// cap holds as long as the processes' clocks agree within the skew the
// limiter was made with (WithClockSkew, DefaultSkew by default): the
// last skew of every epoch is never granted in, so that the epochs of two
// processes never overlap in true time.
//
// # Safety
//
// Permits are counted in the shared state, not held on a lease: a grant
// is a moment, not something held, so there is no fencing token; act on
// a grant at once. Each process holding permits has a reservation key on
// its session's lease (its presence, for the fair share, readable in
// etcdctl and coord status). When a process sees its session end (Close,
// a revoked or expired lease), every permit it reserved and did not grant
// goes back in one last Txn, and every call fails with the session's
// error. A process that crashes, or is cut off, cannot give its permits
// back: they stay counted, and unused, until their epochs pass, that is
// for at most the horizon (one interval by default). They are never
// reused, which is what keeps the cap hard: nobody can tell whether a
// process that vanished granted them. A Txn whose answer is lost is
// resolved through the reservation key, and when it cannot be, a
// reservation is taken as not made (its permits lapse unused) and a
// return as made: a permit can be lost that way, never granted twice.
// Deleting the state key by hand forgets every reservation: the cap then
// holds again only once the permits already reserved have passed, a
// horizon and an interval later.
//
// A Limiter and a Reservation are safe for concurrent use.
package ratelimit
