package benchutil

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// Latencies collects durations from many goroutines.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one sample.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Since records the time since start.
func (l *Latencies) Since(start time.Time) { l.Add(time.Since(start)) }

// Len is the number of samples.
func (l *Latencies) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// Percentile returns the p-th percentile (0 < p <= 100), or 0 with no
// samples.
func (l *Latencies) Percentile(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Report adds the standard metrics to b: ops/s over elapsed for ops
// operations, p50 and p99 of l in milliseconds (when l has samples), and
// RPCs per operation from c (when c is not nil).
func Report(b *testing.B, ops int, elapsed time.Duration, l *Latencies, c *etcdtest.Counter) {
	if ops == 0 || elapsed <= 0 {
		return
	}
	b.ReportMetric(float64(ops)/elapsed.Seconds(), "ops/s")
	if l != nil && l.Len() > 0 {
		b.ReportMetric(float64(l.Percentile(50).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(l.Percentile(99).Microseconds())/1000, "p99-ms")
	}
	if c != nil {
		b.ReportMetric(float64(c.Total())/float64(ops), "rpcs/op")
	}
}
