package watch

import (
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// idleTimeout is how long a feed or mirror outlives its last user, so a
// process that waits again and again (a worker loop, a cron lock) opens
// its watch once rather than on every wait.
const idleTimeout = 30 * time.Second

// Hub is every feed and mirror of one etcd client: the process's watches,
// shared by all its waiters and holders.
type Hub struct {
	cli *clientv3.Client

	mu      sync.Mutex
	feeds   map[span]*Feed
	mirrors map[span]*Mirror
	shared  map[string]any
}

// Shared returns the hub's value for key, made by mk on first use: for a
// primitive's per-process state that must outlive any one of its values
// (a queue's dispatcher of idle consumers). It lives as long as the hub.
func (h *Hub) Shared(key string, mk func() any) any {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shared == nil {
		h.shared = map[string]any{}
	}
	v, ok := h.shared[key]
	if !ok {
		v = mk()
		h.shared[key] = v
	}
	return v
}

// span is a watched range [key, end).
type span struct{ key, end string }

// The registry of hubs, by client. It is the one piece of package-level
// state in coord, and deliberately so: "one watch per prefix per process"
// needs somewhere to find the process's watch, and a primitive built on a
// client (a barrier, a queue producer) has nothing else to hang it on. It
// holds no configuration, only caches, and a hub leaves it when its client
// is closed.
var (
	hubsMu sync.Mutex
	hubs   = map[*clientv3.Client]*Hub{}
)

// For returns the hub of cli.
func For(cli *clientv3.Client) *Hub {
	hubsMu.Lock()
	defer hubsMu.Unlock()
	h, ok := hubs[cli]
	if !ok {
		h = &Hub{cli: cli, feeds: map[span]*Feed{}, mirrors: map[span]*Mirror{}}
		hubs[cli] = h
		go func() {
			<-cli.Ctx().Done()
			hubsMu.Lock()
			delete(hubs, cli)
			hubsMu.Unlock()
		}()
	}
	return h
}

// Client returns the hub's client.
func (h *Hub) Client() *clientv3.Client { return h.cli }

// Stats counts what a hub has open, for tests and for the cost model's
// "one watch per prefix per process".
type Stats struct {
	Feeds, Mirrors, Subs int
}

// Stats returns what the hub has running now.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	feeds := make([]*Feed, 0, len(h.feeds))
	for _, f := range h.feeds {
		feeds = append(feeds, f)
	}
	st := Stats{Feeds: len(h.feeds), Mirrors: len(h.mirrors)}
	h.mu.Unlock()
	for _, f := range feeds {
		f.mu.Lock()
		if f.running {
			st.Subs += len(f.subs)
		}
		f.mu.Unlock()
	}
	return st
}
