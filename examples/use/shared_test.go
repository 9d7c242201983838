package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
)

// On a shared cluster, applications keep apart either with a root prefix
// of their own (session.WithPrefix, and WithPrefix on queues and
// barriers) or with an etcd namespace on the client: both tests hold the
// same names at once for two applications, check that mutual exclusion
// still holds within one, and that no key lands outside its own space.

func TestRootPrefixSeparatesApplications(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := srv.Client()
	for _, root := range []string{"team-a/", "team-b/"} {
		exercise(t, ctx, cli, root)
	}
	assertKeysUnder(t, ctx, cli, "", "team-a/", "team-b/")
}

func TestNamespaceSeparatesApplications(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range []string{"team-a/", "team-b/"} {
		exercise(t, ctx, namespaced(t, srv, ns), "coord/")
	}
	assertKeysUnder(t, ctx, srv.Client(), "", "team-a/coord/", "team-b/coord/")
}

// namespaced returns a client whose every key, watch and lease is inside
// the namespace ns, as the etcd client's namespace package makes one.
func namespaced(t *testing.T, srv *etcdtest.Server, ns string) *clientv3.Client {
	cli := etcdtest.NewTestClient(t, srv.Endpoints())
	cli.KV = namespace.NewKV(cli.KV, ns)
	cli.Watcher = namespace.NewWatcher(cli.Watcher, ns)
	cli.Lease = namespace.NewLease(cli.Lease, ns)
	return cli
}

// exercise holds a lock, leads an election, takes a permit, works a queue
// message and holds a barrier under root, all named "shared", and checks
// that a second session of the same application is excluded.
func exercise(t *testing.T, ctx context.Context, cli *clientv3.Client, root string) {
	t.Helper()
	s1, err := session.New(ctx, cli, session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := session.New(ctx, cli, session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	m := lock.NewMutex(s1, "shared")
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("%s: lock: %v", root, err)
	}
	if err := lock.NewMutex(s2, "shared").TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Errorf("%s: a second holder in the same application: %v, want ErrLocked", root, err)
	}
	e := election.New(s1, "shared")
	if err := e.Campaign(ctx, "me"); err != nil {
		t.Fatalf("%s: campaign: %v", root, err)
	}
	if l, err := election.New(s2, "shared").Leader(ctx); err != nil || l.Value != "me" {
		t.Errorf("%s: leader %+v, %v", root, l, err)
	}
	if _, err := semaphore.New(s1, "shared", 1).Acquire(ctx, 1); err != nil {
		t.Fatalf("%s: acquire: %v", root, err)
	}
	if _, err := semaphore.New(s2, "shared", 1).TryAcquire(ctx, 1); !errors.Is(err, semaphore.ErrNoPermits) {
		t.Errorf("%s: a second permit of one: %v, want ErrNoPermits", root, err)
	}
	q := queue.New(cli, "shared", queue.WithPrefix(root))
	if _, err := q.Enqueue(ctx, []byte("job")); err != nil {
		t.Fatalf("%s: enqueue: %v", root, err)
	}
	msg, err := q.Claim(ctx, s2)
	if err != nil || string(msg.Payload) != "job" {
		t.Fatalf("%s: claim: %v %v", root, msg, err)
	}
	if err := msg.Ack(ctx); err != nil {
		t.Fatalf("%s: ack: %v", root, err)
	}
	b := barrier.New(cli, "shared", barrier.WithPrefix(root))
	if err := b.Hold(ctx); err != nil {
		t.Fatalf("%s: hold: %v", root, err)
	}
	// inspect, on the same client and root, sees this application only.
	ps, err := inspect.List(ctx, cli, root)
	if err != nil || len(ps) != 4 {
		t.Errorf("%s: inspect.List = %d primitives (%v), want lock, election, semaphore, barrier", root, len(ps), err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s1.Close(); s2.Close() })
}

// assertKeysUnder fails if a key under prefix starts with none of roots.
func assertKeysUnder(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, roots ...string) {
	t.Helper()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		ok := false
		for _, r := range roots {
			if strings.HasPrefix(string(kv.Key), r) {
				ok, seen[r] = true, true
			}
		}
		if !ok {
			t.Errorf("key %q is outside %v", kv.Key, roots)
		}
	}
	for _, r := range roots {
		if !seen[r] {
			t.Errorf("no key under %s: the test did not exercise it", r)
		}
	}
}

// An application user whose only role grants readwrite on coord's root
// prefix can use every primitive and inspect: the README's role is all
// coord needs.
func TestRootPrefixRoleIsEnough(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithBcryptCost(4)) // bcrypt.MinCost: logins are not what this tests
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := srv.Client()
	// What the README's etcdctl commands do, through the API.
	steps := []func() error{
		func() error { _, err := admin.RoleAdd(ctx, "coord"); return err },
		func() error {
			_, err := admin.RoleGrantPermission(ctx, "coord", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.UserAdd(ctx, "app", "app-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "app", "coord"); return err },
		func() error { _, err := admin.UserAdd(ctx, "root", "root-secret"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	}
	for i, f := range steps {
		if err := f(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
	app := etcdtest.NewTestClient(t, srv.Endpoints(), etcdtest.WithClientConfig(func(c *clientv3.Config) {
		c.Username, c.Password = "app", "app-secret"
	}))
	// The role really restricts: outside the root is denied.
	if _, err := app.Put(ctx, "elsewhere", "x"); err == nil {
		t.Fatal("the app user could write outside its root: auth is not on")
	}
	exercise(t, ctx, app, "app/")
}
