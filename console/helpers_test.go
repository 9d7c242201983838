package console_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/console"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) {
	etcdtest.Main(m, &srv, etcdtest.WithoutFsync())
}

// syncBuffer is a log sink tests read while the console writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// served is a console of its own root on an httptest server.
type served struct {
	*httptest.Server
	root string
	c    *console.Console
	log  *syncBuffer
}

// serve starts a console of a fresh root, read through cli (a fresh
// client when nil).
func serve(t *testing.T, cli *clientv3.Client, opts ...console.Option) *served {
	t.Helper()
	if cli == nil {
		cli = etcdtest.NewTestClient(t, srv.Endpoints())
	}
	root := strings.ToLower(etcdtest.Name(t)) + "/"
	log := &syncBuffer{}
	opts = append([]console.Option{console.WithPrefix(root), console.WithLogger(slog.New(slog.NewTextHandler(log, nil)))}, opts...)
	c, err := console.New(cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(c)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		c.Close()
		hs.Close()
	})
	return &served{Server: hs, root: root, c: c, log: log}
}

func (s *served) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitPage waits until the page (or the fragment at path) satisfies ok.
func (s *served) waitPage(t *testing.T, path string, what string, ok func(page string) bool) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, page := s.get(t, path)
		if ok(page) {
			return page
		}
		if time.Now().After(deadline) {
			t.Fatalf("page never showed %s; last:\n%s", what, page)
		}
		time.Sleep(20 * time.Millisecond) // a poll of the console's cache, not of etcd
	}
}

func newSession(t *testing.T, root string) *session.Session {
	t.Helper()
	ctx := etcdtest.Context(t, 10*time.Second)
	s, err := session.New(ctx, srv.Client(), session.WithPrefix(root), session.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// deadLetter puts one message of queue name in its dead-letter list and
// returns its id.
func deadLetter(t *testing.T, root, name, payload, reason string) string {
	t.Helper()
	ctx := etcdtest.Context(t, 10*time.Second)
	q := queue.New(srv.Client(), name, queue.WithPrefix(root))
	id, err := q.Enqueue(ctx, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, root)
	m, err := q.Claim(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != id {
		t.Fatalf("claimed %s, want %s", m.ID, id)
	}
	if err := m.Dead(ctx, reason); err != nil {
		t.Fatal(err)
	}
	return id
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}
