package election

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/lease"
)

// Health says whether a Run loop is healthy, for a service's /healthz (as
// client-go's HealthzAdaptor does for its elector): a replica that leads
// but whose session could not renew for longer than a threshold is
// unhealthy, so that an orchestrator can restart it rather than leave a
// stuck leader in place. A replica that does not lead is healthy. It is
// safe for concurrent use; pass it to Run with WithHealth.
type Health struct {
	threshold time.Duration

	mu      sync.Mutex
	leading *lease.Session // the session of the current term, nil when not leading
}

// NewHealth returns a Health that calls a leader unhealthy once its
// session's renewals (due every quarter of its TTL) have failed for
// longer than threshold.
func NewHealth(threshold time.Duration) *Health { return &Health{threshold: threshold} }

func (h *Health) set(s *lease.Session) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.leading = s
	h.mu.Unlock()
}

// Check returns nil when healthy, else why not.
func (h *Health) Check() error {
	h.mu.Lock()
	s := h.leading
	h.mu.Unlock()
	if s == nil {
		return nil
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("election: leading on a session that ended: %w", err)
	}
	// Renewals are due every quarter TTL: what counts is how long the
	// renewal due has been failing.
	if overdue := time.Since(s.Renewed()) - s.TTL()/4; overdue > h.threshold {
		return fmt.Errorf("election: leading, but the session's renewals have failed for %v (threshold %v)", overdue.Round(time.Millisecond), h.threshold)
	}
	return nil
}

// ServeHTTP answers 200 "ok" when healthy and 503 with the reason when
// not, so a Health can be mounted as /healthz directly.
func (h *Health) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if err := h.Check(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}
