package group_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

var seq atomic.Int64

// root returns a fresh root prefix, so each test sees only its own keys.
func root(t testing.TB) string {
	return fmt.Sprintf("t%d-%s/", seq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
}

func newSession(t testing.TB, cli *clientv3.Client, root string, opts ...session.Option) *session.Session {
	t.Helper()
	s, err := session.New(etcdtest.Context(t, 10*time.Second), cli, append([]session.Option{session.WithPrefix(root)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func join(t testing.TB, s *session.Session, name, id string, meta map[string]string, opts ...group.JoinOption) *group.Membership {
	t.Helper()
	m, err := group.Join(etcdtest.Context(t, 10*time.Second), s, name, id, meta, opts...)
	if err != nil {
		t.Fatalf("join %q: %v", id, err)
	}
	return m
}

// keysUnder counts the keys under root's group subtree.
func keysUnder(t testing.TB, root string) int {
	t.Helper()
	resp, err := srv.Client().Get(etcdtest.Context(t, 5*time.Second), root+"group/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return int(resp.Count)
}

// next receives the next view within d.
func next(t testing.TB, ch <-chan group.View, d time.Duration) group.View {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return v
	case <-time.After(d):
		t.Fatalf("no view within %v", d)
	}
	return group.View{}
}

func ids(ms []group.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return strings.Join(out, ",")
}

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context { return etcdtest.Context(t, d) }

func ctxWithCancel(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
