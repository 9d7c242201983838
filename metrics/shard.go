package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Shard map events counted by ShardEvent.
const (
	ShardAcquired = "acquired"
	ShardReleased = "released"
	ShardLost     = "lost"
)

// shardMetrics are the shard maps' collectors.
type shardMetrics struct {
	owned    *prometheus.GaugeVec     // name
	events   *prometheus.CounterVec   // name, event
	converge *prometheus.HistogramVec // name
}

func (m *Metrics) initShard() {
	m.shard.owned = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: m.ns, Subsystem: "shard", Name: "owned",
		Help: "Shards of the map this process owns now.",
	}, []string{"name"})
	m.shard.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "shard", Name: "moves_total",
		Help: "Shards this process acquired, released (handed over or at the end of Run) and lost.",
	}, []string{"name", "event"})
	m.shard.converge = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "shard", Name: "converge_seconds",
		Help:    "Time from a change of the map's members, as this process saw it, until every shard was with its planned owner.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14), // 10ms .. ~80s
	}, []string{"name"})
	m.all = append(m.all, m.shard.owned, m.shard.events, m.shard.converge)
}

// ShardOwned adds delta to the shards of a map this process owns.
func (m *Metrics) ShardOwned(name string, delta int) {
	if m != nil {
		m.shard.owned.WithLabelValues(m.name(name)).Add(float64(delta))
	}
}

// ShardEvent counts one shard acquired, released or lost (ShardAcquired,
// ...).
func (m *Metrics) ShardEvent(name, event string) {
	if m != nil {
		m.shard.events.WithLabelValues(m.name(name), event).Inc()
	}
}

// ShardConverged records how long a map took to converge after its
// members changed.
func (m *Metrics) ShardConverged(name string, d time.Duration) {
	if m != nil {
		m.shard.converge.WithLabelValues(m.name(name)).Observe(d.Seconds())
	}
}
