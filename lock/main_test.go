package lock_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// srv is shared by every test of the package; each test uses fresh names.
var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

var seq atomic.Int64

// fresh returns a name no other test uses.
func fresh(t testing.TB) string {
	return fmt.Sprintf("%s-%d", t.Name(), seq.Add(1))
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newSession starts a session on the shared server, closed at cleanup.
func newSession(t testing.TB, opts ...session.Option) *session.Session {
	t.Helper()
	return sessionOn(t, srv.Client(), opts...)
}

func sessionOn(t testing.TB, cli *clientv3.Client, opts ...session.Option) *session.Session {
	t.Helper()
	s, err := session.New(ctxT(t, 10*time.Second), cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// countKeys returns how many keys a lock name has in part ("w" or "r").
func countKeys(t testing.TB, s *session.Session, kind, name, part string) int64 {
	t.Helper()
	sp, err := keys.New(s.Prefix(), kind, name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), sp.Part(part), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// eventually polls cond until it holds or d passes.
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

// async runs f in a goroutine and returns its result channel.
func async(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

func within(t testing.TB, c <-chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(d):
		t.Fatalf("not within %v: %s", d, what)
		return nil
	}
}

// stillBlocked asserts that c yields nothing for d: the negative half of a
// blocking test, which no condition can replace.
func stillBlocked(t testing.TB, c <-chan error, d time.Duration, what string) {
	t.Helper()
	select {
	case err := <-c:
		t.Fatalf("%s returned early: %v", what, err)
	case <-time.After(d):
	}
}

func closedWithin(t testing.TB, c <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(d):
		t.Fatalf("not within %v: %s", d, what)
	}
}
