package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// srv is shared by every test of the package; each test uses fresh names
// and a root of its own.
var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

func ctxT(t testing.TB, d time.Duration) context.Context { return etcdtest.Context(t, d) }

// root returns a root prefix no other test uses.
func root(t testing.TB) string { return "rl-" + etcdtest.Name(t) + "/" }

// newSession starts a session on its own client (a process of its own),
// closed at cleanup.
func newSession(t testing.TB, prefix string, opts ...session.Option) *session.Session {
	t.Helper()
	cli := etcdtest.NewTestClient(t, srv.Endpoints())
	return sessionOn(t, cli, prefix, opts...)
}

func sessionOn(t testing.TB, cli *clientv3.Client, prefix string, opts ...session.Option) *session.Session {
	t.Helper()
	s, err := session.New(ctxT(t, 10*time.Second), cli, append([]session.Option{session.WithPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// keysUnder counts the keys under prefix.
func keysUnder(t testing.TB, prefix string) int64 {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// eventually waits for cond, checking every few milliseconds, up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
