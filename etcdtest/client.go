package etcdtest

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ClientOption configures a client made by this package.
type ClientOption func(*clientv3.Config)

// WithCounter makes the client count its RPCs into c.
func WithCounter(c *Counter) ClientOption {
	return func(cfg *clientv3.Config) { cfg.DialOptions = append(cfg.DialOptions, c.DialOptions()...) }
}

// WithClientConfig edits the client config directly (timeouts, TLS,
// keepalive, logger), for what the other options do not cover.
func WithClientConfig(f func(*clientv3.Config)) ClientOption { return ClientOption(f) }

// NewClient returns a client for endpoints, set up for tests: silent
// logs, a 5 s dial timeout, and a reconnect backoff capped at 1 s (gRPC's
// default grows to two minutes, far too slow for a member that restarts
// within a test). The caller closes it.
func NewClient(endpoints []string, opts ...ClientOption) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return clientv3.New(cfg)
}

// Proxies is one Proxy per endpoint of a cluster, for a client whose
// every connection should suffer the same fault.
type Proxies []*Proxy

// Endpoints is the proxies' addresses, to dial the client with.
func (ps Proxies) Endpoints() []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Endpoints()...)
	}
	return out
}

// Blackhole blackholes every proxy.
func (ps Proxies) Blackhole() {
	for _, p := range ps {
		p.Blackhole()
	}
}

// Delay delays every proxy.
func (ps Proxies) Delay(d time.Duration) {
	for _, p := range ps {
		p.Delay(d)
	}
}

// Restore restores every proxy.
func (ps Proxies) Restore() {
	for _, p := range ps {
		p.Restore()
	}
}

// NewProxies puts a proxy in front of each endpoint; they close when the
// test ends.
func NewProxies(t testing.TB, endpoints []string) Proxies {
	t.Helper()
	var ps Proxies
	for _, ep := range endpoints {
		ps = append(ps, NewProxy(t, ep))
	}
	return ps
}

// NewTestClient returns a new client for endpoints, set up as NewClient
// sets one up, and closes it when the test ends, as NewServer does with
// its server. It fails the test if the client cannot be made. Use it for
// a client of its own in a test (a second process, a client behind a
// Proxy, a namespaced one); Server.Client and Cluster.Client give the
// shared one.
func NewTestClient(t testing.TB, endpoints []string, opts ...ClientOption) *clientv3.Client {
	t.Helper()
	cli, err := NewClient(endpoints, opts...)
	if err != nil {
		t.Fatalf("etcdtest: client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
