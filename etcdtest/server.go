package etcdtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Server is one etcd member on loopback, embedded in the test process or,
// WithBinary, a real etcd process. Clients talk to it directly, with no
// proxy in between, so it is the right server for benchmarks.
type Server struct {
	m       *member
	tmp     string
	mu      sync.Mutex
	cli     *clientv3.Client
	clients []*clientv3.Client
	closed  bool
}

// NewServer starts an embedded etcd server on 127.0.0.1 with a
// kernel-chosen port and a temporary data directory, and closes it (and
// every client it made) when the test ends. It fails the test if the
// server does not start.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := Start(opts...)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start is NewServer for TestMain, Example functions and programs: it
// returns an error instead of failing a test, and the caller must Close
// the server.
func Start(opts ...Option) (*Server, error) {
	tries := 1
	if newConfig(opts).binary != "" {
		tries = startRetries
	}
	var err error
	for i := 0; i < tries; i++ {
		var s *Server
		if s, err = start(opts); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func start(opts []Option) (*Server, error) {
	cfg := newConfig(opts)
	s := &Server{}
	dir := cfg.dataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "etcdtest-")
		if err != nil {
			return nil, err
		}
		s.tmp, dir = tmp, tmp
	}
	s.m = &member{name: "m0", dir: dir, cfg: cfg}
	if err := s.m.start(true, true); err != nil {
		s.m.stop(true)
		s.cleanupDir()
		return nil, err
	}
	return s, nil
}

func (s *Server) cleanupDir() {
	if s.tmp != "" {
		os.RemoveAll(s.tmp)
	}
}

// Endpoints returns the client URL of the server.
func (s *Server) Endpoints() []string { return []string{s.m.clientURL()} }

// Etcd returns the embedded server, for what this package does not wrap.
// It is nil for a server that runs as a process (WithBinary, BinaryEnv).
func (s *Server) Etcd() *embed.Etcd { return s.m.etcd }

// Client returns a client connected to the server, made on first use and
// closed with the server.
func (s *Server) Client() *clientv3.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli == nil {
		cli, err := NewClient(s.Endpoints())
		if err != nil {
			panic(fmt.Sprintf("etcdtest: client for a running server: %v", err))
		}
		s.cli = cli
	}
	return s.cli
}

// NewClient returns a new client of its own (for a second process, say),
// closed with the server.
func (s *Server) NewClient(opts ...ClientOption) (*clientv3.Client, error) {
	cli, err := NewClient(s.Endpoints(), opts...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.clients = append(s.clients, cli)
	s.mu.Unlock()
	return cli, nil
}

// Compact compacts the server's history up to its current revision, so
// that any watch from an older revision fails with ErrCompacted.
func (s *Server) Compact(ctx context.Context) error {
	return compactAll(ctx, s.Client())
}

func compactAll(ctx context.Context, cli *clientv3.Client) error {
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		return err
	}
	_, err = cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	return err
}

// Close stops the server, closes its clients and removes a temporary
// data directory. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	clients := append(s.clients, s.cli)
	s.mu.Unlock()
	for _, c := range clients {
		if c != nil {
			c.Close()
		}
	}
	done := make(chan struct{})
	go func() { s.m.stop(false); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
	s.cleanupDir()
}
