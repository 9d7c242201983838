package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// scheduleMetrics are the collectors of package schedule.
type scheduleMetrics struct {
	runs     *prometheus.CounterVec   // name, outcome
	skipped  *prometheus.CounterVec   // name, reason
	duration *prometheus.HistogramVec // name
	lateness *prometheus.HistogramVec // name
	early    *prometheus.CounterVec   // name
}

func (m *Metrics) initSchedule() []prometheus.Collector {
	s := &scheduleMetrics{}
	s.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "schedule", Name: "runs_total",
		Help: "Schedule runs ended, by outcome (succeeded, failed, cancelled, crashed), counted by the replica that recorded them.",
	}, []string{"name", "outcome"})
	s.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "schedule", Name: "skipped_total",
		Help: "Schedule ticks not run, by reason (missed, overlap, paused), counted once by the replica that decided them.",
	}, []string{"name", "reason"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "schedule", Name: "run_seconds",
		Help: "How long schedule runs took.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
	}, []string{"name"})
	s.lateness = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: m.ns, Subsystem: "schedule", Name: "lateness_seconds",
		Help: "Start of a run minus its tick's scheduled time, by the runner's clock.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
	}, []string{"name"})
	s.early = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "schedule", Name: "early_claims_total",
		Help: "Claims seen before this replica's clock reached their tick by more than twice the skew tolerance: clocks disagree.",
	}, []string{"name"})
	m.schedule = s
	return []prometheus.Collector{s.runs, s.skipped, s.duration, s.lateness, s.early}
}

// ScheduleRun records a run that ended with outcome, after d.
func (m *Metrics) ScheduleRun(name, outcome string, d time.Duration) {
	if m != nil {
		n := m.name(name)
		m.schedule.runs.WithLabelValues(n, outcome).Inc()
		if d > 0 {
			m.schedule.duration.WithLabelValues(n).Observe(d.Seconds())
		}
	}
}

// ScheduleSkipped records n ticks not run, for reason.
func (m *Metrics) ScheduleSkipped(name, reason string, n int64) {
	if m != nil {
		m.schedule.skipped.WithLabelValues(m.name(name), reason).Add(float64(n))
	}
}

// ScheduleLateness records how late a run started.
func (m *Metrics) ScheduleLateness(name string, d time.Duration) {
	if m != nil {
		m.schedule.lateness.WithLabelValues(m.name(name)).Observe(max(d, 0).Seconds())
	}
}

// ScheduleEarlyClaim records a claim seen too early for the skew
// tolerance.
func (m *Metrics) ScheduleEarlyClaim(name string) {
	if m != nil {
		m.schedule.early.WithLabelValues(m.name(name)).Inc()
	}
}
