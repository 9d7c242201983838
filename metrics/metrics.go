// Package metrics holds coord's Prometheus collectors. A *Metrics is a
// prometheus.Collector: register it with your own registry and pass it to
// session.WithMetrics, and every primitive built on that session reports
// into it. Nothing is registered globally.
//
// A nil *Metrics is valid and records nothing, so primitives never need to
// check for one.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Option configures New.
type Option func(*Metrics)

// WithoutNameLabel drops the "name" label from every series, for programs
// whose primitive names are unbounded (per-user locks, say).
func WithoutNameLabel() Option { return func(m *Metrics) { m.noName = true } }

// WithNamespace sets the metric namespace (default "coord").
func WithNamespace(ns string) Option { return func(m *Metrics) { m.ns = ns } }

// Metrics is a set of collectors for one program. It is safe for
// concurrent use.
type Metrics struct {
	ns     string
	noName bool

	keepAliveLatency  prometheus.Histogram
	keepAliveFailures prometheus.Counter
	sessionsLost      prometheus.Counter

	all []prometheus.Collector
}

// New returns a Metrics with every collector created and none registered.
func New(opts ...Option) *Metrics {
	m := &Metrics{ns: "coord"}
	for _, o := range opts {
		o(m)
	}
	m.keepAliveLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "session", Name: "keepalive_latency_seconds",
		Help:    "Round-trip time of acknowledged lease keepalives.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	m.keepAliveFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "session", Name: "keepalive_failures_total",
		Help: "Lease keepalives that failed or timed out.",
	})
	m.sessionsLost = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "session", Name: "lost_total",
		Help: "Sessions whose lease was lost (expired or revoked), not counting Close.",
	})
	m.all = append(m.all, m.keepAliveLatency, m.keepAliveFailures, m.sessionsLost)
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
