package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures New.
type Option func(*Metrics)

// WithoutNameLabel drops the "name" label from every series (it is always
// ""), for programs whose primitive names are unbounded, such as per-user
// locks.
func WithoutNameLabel() Option { return func(m *Metrics) { m.noName = true } }

// WithNamespace sets the metric namespace (default "coord").
func WithNamespace(ns string) Option { return func(m *Metrics) { m.ns = ns } }

// Queue events counted by QueueEvent.
const (
	QueueEnqueued     = "enqueued"
	QueueClaimed      = "claimed"
	QueueAcked        = "acked"
	QueueNacked       = "nacked"
	QueueRedelivered  = "redelivered"
	QueueDeadLettered = "dead_lettered"
	QueueRedriven     = "redriven"
)

// Metrics is a set of collectors for one program. It is safe for
// concurrent use.
type Metrics struct {
	ns         string
	noName     bool
	depthEvery time.Duration // ops.go

	keepAliveLatency  prometheus.Histogram
	keepAliveFailures prometheus.Counter
	sessionsLost      prometheus.Counter

	waitSeconds  *prometheus.HistogramVec // kind, name
	holdSeconds  *prometheus.HistogramVec // kind, name
	acquisitions *prometheus.CounterVec   // kind, name
	lost         *prometheus.CounterVec   // kind, name
	waiting      *prometheus.GaugeVec     // kind, name
	holding      *prometheus.GaugeVec     // kind, name
	holdStart    *prometheus.GaugeVec     // kind, name

	leaderTransitions *prometheus.CounterVec // name
	isLeader          *prometheus.GaugeVec   // name

	permitsHeld *prometheus.GaugeVec // name

	queueEvents *prometheus.CounterVec   // name, event
	claimToAck  *prometheus.HistogramVec // name

	schedule *scheduleMetrics
	rl       rateLimit // ratelimit.go
	shard    shardMetrics
	ops      *ops // ops.go

	all []prometheus.Collector
}

// New returns a Metrics with every collector created and none registered.
func New(opts ...Option) *Metrics {
	m := &Metrics{ns: "coord", depthEvery: DefaultDepthInterval}
	for _, o := range opts {
		o(m)
	}
	latency := prometheus.ExponentialBuckets(0.0005, 2, 16) // 0.5ms .. ~16s
	long := prometheus.ExponentialBuckets(0.001, 4, 12)     // 1ms .. ~70min
	kn := []string{"kind", "name"}
	m.keepAliveLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "session", Name: "keepalive_latency_seconds",
		Help: "Round-trip time of acknowledged lease keepalives.", Buckets: latency,
	})
	m.keepAliveFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "session", Name: "keepalive_failures_total",
		Help: "Lease keepalives that failed or timed out.",
	})
	m.sessionsLost = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "session", Name: "lost_total",
		Help: "Sessions whose lease was lost (expired or revoked), not counting Close.",
	})
	m.waitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Name: "wait_seconds",
		Help: "Time from asking for a lock, leadership or permit to getting it.", Buckets: latency,
	}, kn)
	m.holdSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Name: "hold_seconds",
		Help: "Time a lock, leadership or permit was held, until released or lost.", Buckets: long,
	}, kn)
	m.acquisitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Name: "acquisitions_total",
		Help: "Locks, leaderships and permits acquired.",
	}, kn)
	m.lost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Name: "lost_total",
		Help: "Holds lost without being released (session lost or key deleted).",
	}, kn)
	m.waiting = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Name: "waiting",
		Help: "Callers of this process now waiting for a lock, leadership or permit.",
	}, kn)
	m.holding = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Name: "holding",
		Help: "Locks, leaderships, permits and claims this process holds now.",
	}, kn)
	m.holdStart = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Name: "hold_start_timestamp_seconds",
		Help: "Unix time of this process's latest acquisition; with holding > 0, time() minus it is how long the hold has lasted.",
	}, kn)
	m.leaderTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "election", Name: "transitions_total",
		Help: "Times this process gained or lost leadership.",
	}, []string{"name"})
	m.isLeader = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Subsystem: "election", Name: "is_leader",
		Help: "1 while this process leads the election, else 0.",
	}, []string{"name"})
	m.permitsHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Subsystem: "semaphore", Name: "permits_held",
		Help: "Semaphore weight this process holds now.",
	}, []string{"name"})
	m.queueEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "queue", Name: "messages_total",
		Help: "Queue message events: enqueued, claimed, acked, nacked, redelivered, dead_lettered, redriven.",
	}, []string{"name", "event"})
	m.claimToAck = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "queue", Name: "claim_to_ack_seconds",
		Help: "Time from claiming a message to acking it.", Buckets: long,
	}, []string{"name"})
	m.all = []prometheus.Collector{m.keepAliveLatency, m.keepAliveFailures, m.sessionsLost,
		m.waitSeconds, m.holdSeconds, m.acquisitions, m.lost, m.waiting, m.holding, m.holdStart,
		m.leaderTransitions, m.isLeader, m.permitsHeld, m.queueEvents, m.claimToAck}
	m.all = append(m.all, m.initSchedule()...)
	m.all = append(m.all, m.initRateLimit()...)
	m.initShard()
	m.all = append(m.all, m.initOps()...)
	return m
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all {
		c.Collect(ch)
	}
}

func (m *Metrics) name(n string) string {
	if m.noName {
		return ""
	}
	return n
}

// KeepAlive records one acknowledged keepalive's round trip.
func (m *Metrics) KeepAlive(d time.Duration) {
	if m != nil {
		m.keepAliveLatency.Observe(d.Seconds())
	}
}

// KeepAliveFailed records a failed keepalive.
func (m *Metrics) KeepAliveFailed() {
	if m != nil {
		m.keepAliveFailures.Inc()
	}
}

// SessionLost records a lost session.
func (m *Metrics) SessionLost() {
	if m != nil {
		m.sessionsLost.Inc()
	}
}

// Waiting adds delta (+1 on starting to wait, -1 on leaving the wait,
// whatever the outcome) to the waiters of one primitive.
func (m *Metrics) Waiting(kind, name string, delta int) {
	if m != nil {
		m.waiting.WithLabelValues(kind, m.name(name)).Add(float64(delta))
	}
}

// Acquired records an acquisition and how long it waited.
func (m *Metrics) Acquired(kind, name string, wait time.Duration) {
	if m != nil {
		n := m.name(name)
		m.acquisitions.WithLabelValues(kind, n).Inc()
		m.waitSeconds.WithLabelValues(kind, n).Observe(wait.Seconds())
		m.holding.WithLabelValues(kind, n).Inc()
		m.holdStart.WithLabelValues(kind, n).Set(float64(time.Now().UnixNano()) / 1e9)
	}
}

// Released records the end of a hold and how long it lasted; lost says it
// ended by loss rather than by release.
func (m *Metrics) Released(kind, name string, held time.Duration, lost bool) {
	if m != nil {
		n := m.name(name)
		m.holdSeconds.WithLabelValues(kind, n).Observe(held.Seconds())
		m.holding.WithLabelValues(kind, n).Dec()
		if lost {
			m.lost.WithLabelValues(kind, n).Inc()
		}
	}
}

// Leader records a leadership change of this process.
func (m *Metrics) Leader(name string, leading bool) {
	if m != nil {
		n := m.name(name)
		m.leaderTransitions.WithLabelValues(n).Inc()
		v := 0.0
		if leading {
			v = 1
		}
		m.isLeader.WithLabelValues(n).Set(v)
	}
}

// Permits adds delta to the semaphore weight this process holds.
func (m *Metrics) Permits(name string, delta int64) {
	if m != nil {
		m.permitsHeld.WithLabelValues(m.name(name)).Add(float64(delta))
	}
}

// QueueEvent counts one queue message event (QueueEnqueued, ...).
func (m *Metrics) QueueEvent(name, event string) {
	if m != nil {
		m.queueEvents.WithLabelValues(m.name(name), event).Inc()
	}
}

// ClaimToAck records the time from a claim to its ack.
func (m *Metrics) ClaimToAck(name string, d time.Duration) {
	if m != nil {
		m.claimToAck.WithLabelValues(m.name(name)).Observe(d.Seconds())
	}
}
