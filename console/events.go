package console

import (
	"fmt"
	"net/http"
	"time"
)

// keepalive is how often a quiet event stream sends a comment, so that
// proxies keep it open and a dead viewer is noticed.
const keepalive = 20 * time.Second

// events streams server-sent events to one viewer: "changed", with the
// snapshot's version, when it connects and after every change of the
// cache. A viewer costs etcd nothing: it waits on the cache, which one
// watch feeds; a burst of changes that ends in one snapshot is one event,
// and a viewer that was busy sees only the latest version.
func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "console: streaming unsupported", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	sent := uint64(0)
	for {
		snap, ch := c.cache.current()
		if snap.version != sent {
			if _, err := fmt.Fprintf(w, "event: changed\ndata: %d\n\n", snap.version); err != nil {
				return
			}
			fl.Flush()
			sent = snap.version
		}
		select {
		case <-ch:
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			fl.Flush()
		case <-c.cache.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}
