package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rateLimit is the ratelimit package's collectors.
type rateLimit struct {
	granted      *prometheus.CounterVec   // name
	denied       *prometheus.CounterVec   // name
	waitSeconds  *prometheus.HistogramVec // name
	waiting      *prometheus.GaugeVec     // name
	reservations *prometheus.CounterVec   // name
	permits      *prometheus.CounterVec   // name, event
	txns         *prometheus.CounterVec   // name, op, result
}

func (m *Metrics) initRateLimit() []prometheus.Collector {
	r := &m.rl
	r.granted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "granted_total",
		Help: "Events granted to this process's callers (Wait, Allow, Reserve).",
	}, []string{"name"})
	r.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "denied_total",
		Help: "Allow calls answered false.",
	}, []string{"name"})
	r.waitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "wait_seconds",
		Help: "Time from a Wait or Allow call to its grant.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"name"})
	r.waiting = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "waiting",
		Help: "Callers of this process now waiting for permits.",
	}, []string{"name"})
	r.reservations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "reservations_total",
		Help: "Reservations this process made: Txns that took a batch of permits.",
	}, []string{"name"})
	r.permits = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "permits_total",
		Help: "Permits by what became of them: reserved, returned (given back unused), lapsed (their epoch passed unused), cancelled (a Reservation cancelled).",
	}, []string{"name", "event"})
	r.txns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "ratelimit", Name: "txns_total",
		Help: "etcd Txns of the limiter by op (reserve, return, release, set) and result (ok, conflict, error).",
	}, []string{"name", "op", "result"})
	return []prometheus.Collector{r.granted, r.denied, r.waitSeconds, r.waiting, r.reservations, r.permits, r.txns}
}

// RateLimitGranted counts n events granted after waiting wait.
func (m *Metrics) RateLimitGranted(name string, n int64, wait time.Duration) {
	if m != nil {
		m.rl.granted.WithLabelValues(m.name(name)).Add(float64(n))
		m.rl.waitSeconds.WithLabelValues(m.name(name)).Observe(wait.Seconds())
	}
}

// RateLimitDenied counts an Allow answered false.
func (m *Metrics) RateLimitDenied(name string) {
	if m != nil {
		m.rl.denied.WithLabelValues(m.name(name)).Inc()
	}
}

// RateLimitWaiting adds delta to the callers waiting for permits.
func (m *Metrics) RateLimitWaiting(name string, delta int) {
	if m != nil {
		m.rl.waiting.WithLabelValues(m.name(name)).Add(float64(delta))
	}
}

// RateLimitReserved counts one reservation of n permits.
func (m *Metrics) RateLimitReserved(name string, n int64) {
	if m != nil {
		m.rl.reservations.WithLabelValues(m.name(name)).Inc()
		m.rl.permits.WithLabelValues(m.name(name), "reserved").Add(float64(n))
	}
}

// RateLimitPermits counts n permits that were returned, lapsed or
// cancelled (event).
func (m *Metrics) RateLimitPermits(name, event string, n int64) {
	if m != nil {
		m.rl.permits.WithLabelValues(m.name(name), event).Add(float64(n))
	}
}

// RateLimitTxn counts one etcd Txn of a limiter.
func (m *Metrics) RateLimitTxn(name, op, result string) {
	if m != nil {
		m.rl.txns.WithLabelValues(m.name(name), op, result).Inc()
	}
}
