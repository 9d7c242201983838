// Package metrics holds coord's Prometheus collectors. A *Metrics is a
// prometheus.Collector: register it with your own registry and pass it to
// session.WithMetrics (and queue.WithMetrics), and every primitive built
// on it reports into it. Nothing is registered globally, and the README's
// "Operating coord" section lists every series with sample alerts.
//
// Besides what the primitives count, a Metrics reports what operators
// ask for first, computed at scrape time: coord_session_alive and
// coord_session_etcd_reachable per session (from its keepalive stream, no
// request of their own), coord_queue_depth by state for each queue made
// with queue.WithMetrics (one count-only Txn per queue, at most once per
// WithDepthInterval: etcd counts the keys in its in-memory index, reading
// and sending no value), and coord_build_info. Traces are not metrics:
// they are opt-in through session.WithTracerProvider.
//
// # Safety
//
// A *Metrics is safe for concurrent use by any number of sessions. A nil
// *Metrics is valid and records nothing, so primitives never check for
// one. Metrics describe this process only: coord_holding says what this
// process holds, not who holds a name across the fleet (use the inspect
// package or `coord status` for that). Names become label values unless
// WithoutNameLabel is set, so use it when names are unbounded.
package metrics
