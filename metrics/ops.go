package metrics

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The series operators ask for first: is this process's session alive,
// can it reach etcd, how deep are its queues, which build is it. All of
// them are computed at scrape time from what the process already knows,
// with one exception, bounded and cached: the queue depths (see
// TrackQueue).

// DefaultDepthInterval is how long a queue's depth, once read, answers
// scrapes before it is read again (see WithDepthInterval).
const DefaultDepthInterval = 10 * time.Second

// depthTimeout bounds one queue's depth read at scrape time.
const depthTimeout = 2 * time.Second

// endedKept is how many ended sessions keep their coord_session_alive 0
// series, so a program that makes many sessions does not grow its
// metrics without bound.
const endedKept = 16

// WithDepthInterval sets how long a queue's depth, once read, answers
// scrapes before the next scrape reads it again (default
// DefaultDepthInterval). 0 reads at every scrape; a negative d counts as 0.
func WithDepthInterval(d time.Duration) Option {
	return func(m *Metrics) { m.depthEvery = max(d, 0) }
}

// QueueDepth counts a queue's messages by state.
type QueueDepth struct {
	Ready   int64 // claimable now
	Delayed int64 // waiting for their delay (or a Nack's backoff)
	Claimed int64 // claimed by a live consumer: in flight
	Dead    int64 // in the dead-letter list
}

// ops is the collector of the operations series.
type ops struct {
	m         *Metrics
	alive     *prometheus.Desc // lease
	reachable *prometheus.Desc // lease
	depth     *prometheus.Desc // name, state
	build     prometheus.Gauge // version, go_version: always 1
	depthErrs *prometheus.CounterVec

	mu       sync.Mutex
	sessions map[string]func() bool // live sessions: lease → reachable
	ended    []string               // ended sessions still shown at 0, oldest first
	queues   map[string]*tracked    // by the queue's base key
}

// tracked is one queue whose depth is reported, and its last reading.
type tracked struct {
	name string
	read func(context.Context) (QueueDepth, error)

	mu   sync.Mutex // one read at a time; concurrent scrapes share it
	at   time.Time
	last QueueDepth
	ok   bool
}

func (m *Metrics) initOps() []prometheus.Collector {
	o := &ops{m: m, sessions: map[string]func() bool{}, queues: map[string]*tracked{}}
	o.alive = prometheus.NewDesc(prometheus.BuildFQName(m.ns, "session", "alive"),
		"1 while the session with this lease is alive, 0 once it was closed or lost (the last ended sessions are kept).",
		[]string{"lease"}, nil)
	o.reachable = prometheus.NewDesc(prometheus.BuildFQName(m.ns, "session", "etcd_reachable"),
		"1 while etcd answers the session's lease renewals in time, as its keepalive stream sees them (no extra request): 0 when a renewal failed, or none sent in the last 1.5 renewal intervals (TTL/4 each) was answered.",
		[]string{"lease"}, nil)
	o.depth = prometheus.NewDesc(prometheus.BuildFQName(m.ns, "queue", "depth"),
		"Messages of a queue by state (ready, delayed, claimed, dead), counted by etcd at most once per depth interval.",
		[]string{"name", "state"}, nil)
	o.depthErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: m.ns, Subsystem: "queue", Name: "depth_read_failures_total",
		Help: "Scrape-time reads of a queue's depth that failed (its depth series are left out of that scrape).",
	}, []string{"name"})
	version, goVersion := buildVersions()
	o.build = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: m.ns, Name: "build_info",
		Help:        "Always 1: the coord module version this program was built with, and its Go version.",
		ConstLabels: prometheus.Labels{"version": version, "go_version": goVersion},
	})
	o.build.Set(1)
	m.ops = o
	return []prometheus.Collector{o, o.depthErrs, o.build}
}

// buildVersions returns coord's module version as the running binary
// records it ("(devel)" when coord is the main module built from a work
// tree, "unknown" without build information) and the Go version.
func buildVersions() (version, goVersion string) {
	version, goVersion = "unknown", runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version, goVersion
	}
	if bi.GoVersion != "" {
		goVersion = bi.GoVersion
	}
	const path = "github.com/coord-go/coord"
	if bi.Main.Path == path && bi.Main.Version != "" {
		return bi.Main.Version, goVersion
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			return d.Version, goVersion
		}
	}
	return version, goVersion
}

// Describe implements prometheus.Collector.
func (o *ops) Describe(ch chan<- *prometheus.Desc) {
	ch <- o.alive
	ch <- o.reachable
	ch <- o.depth
}

// Collect implements prometheus.Collector.
func (o *ops) Collect(ch chan<- prometheus.Metric) {
	o.mu.Lock()
	for l, reach := range o.sessions {
		ch <- prometheus.MustNewConstMetric(o.alive, prometheus.GaugeValue, 1, l)
		ch <- prometheus.MustNewConstMetric(o.reachable, prometheus.GaugeValue, b2f(reach()), l)
	}
	for _, l := range o.ended {
		ch <- prometheus.MustNewConstMetric(o.alive, prometheus.GaugeValue, 0, l)
	}
	qs := make([]*tracked, 0, len(o.queues))
	for _, t := range o.queues {
		qs = append(qs, t)
	}
	o.mu.Unlock()

	// Queues of one label (several roots, or WithoutNameLabel) add up:
	// two series of one label set would fail the whole scrape.
	sum := map[string]*QueueDepth{}
	var order []string
	for _, t := range qs {
		d, ok := t.depth(o.m.depthEvery)
		n := o.m.name(t.name)
		if !ok {
			o.depthErrs.WithLabelValues(n).Inc()
			continue
		}
		s := sum[n]
		if s == nil {
			s = &QueueDepth{}
			sum[n] = s
			order = append(order, n)
		}
		s.Ready += d.Ready
		s.Delayed += d.Delayed
		s.Claimed += d.Claimed
		s.Dead += d.Dead
	}
	for _, n := range order {
		s := sum[n]
		for _, v := range []struct {
			state string
			n     int64
		}{{"ready", s.Ready}, {"delayed", s.Delayed}, {"claimed", s.Claimed}, {"dead", s.Dead}} {
			ch <- prometheus.MustNewConstMetric(o.depth, prometheus.GaugeValue, float64(v.n), n, v.state)
		}
	}
}

// depth returns the queue's depth, read now unless the last reading is
// younger than every.
func (t *tracked) depth(every time.Duration) (QueueDepth, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ok && time.Since(t.at) < every {
		return t.last, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), depthTimeout)
	defer cancel()
	d, err := t.read(ctx)
	if err != nil {
		t.ok = false
		return QueueDepth{}, false
	}
	t.last, t.at, t.ok = d, time.Now(), true
	return d, true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// SessionStarted starts reporting the session with lease (in hex) as
// alive, and its etcd reachability as reachable tells it at each scrape,
// until SessionEnded.
func (m *Metrics) SessionStarted(lease string, reachable func() bool) {
	if m == nil {
		return
	}
	m.ops.mu.Lock()
	defer m.ops.mu.Unlock()
	m.ops.sessions[lease] = reachable
}

// SessionEnded reports the session with lease as no longer alive (closed
// or lost). Its coord_session_alive series stays, at 0, until endedKept
// sessions ended after it.
func (m *Metrics) SessionEnded(lease string) {
	if m == nil {
		return
	}
	o := m.ops
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.sessions[lease]; !ok {
		return
	}
	delete(o.sessions, lease)
	o.ended = append(o.ended, lease)
	if len(o.ended) > endedKept {
		o.ended = o.ended[len(o.ended)-endedKept:]
	}
}

// TrackQueue reports the depth of the queue whose keys live under key
// (its base key: one entry per queue, however many values of it are
// made) as coord_queue_depth{name}, read by read at scrape time, at most
// once per depth interval (WithDepthInterval) and with a timeout of its
// own. A read that fails leaves the queue's series out of that scrape
// and counts in coord_queue_depth_read_failures_total. Tracking the same
// key again replaces its read.
func (m *Metrics) TrackQueue(key, name string, read func(context.Context) (QueueDepth, error)) {
	if m == nil {
		return
	}
	m.ops.mu.Lock()
	defer m.ops.mu.Unlock()
	if t := m.ops.queues[key]; t != nil {
		t.mu.Lock()
		t.read = read
		t.mu.Unlock()
		return
	}
	m.ops.queues[key] = &tracked{name: name, read: read}
}
