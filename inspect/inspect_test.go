package inspect_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
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
)

var srv *etcdtest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

func newSession(t *testing.T, ctx context.Context, root string) *session.Session {
	t.Helper()
	s, err := session.New(ctx, srv.Client(), session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitFor polls List until cond holds: waiters join the line
// asynchronously.
func waitFor(t *testing.T, ctx context.Context, root string, cond func([]inspect.Primitive) bool) []inspect.Primitive {
	t.Helper()
	for {
		ps, err := inspect.List(ctx, srv.Client(), root)
		if err != nil {
			t.Fatal(err)
		}
		if cond(ps) {
			return ps
		}
		select {
		case <-ctx.Done():
			var b bytes.Buffer
			inspect.Render(&b, ps)
			t.Fatalf("state never matched; last:\n%s", b.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func find(ps []inspect.Primitive, kind, name string) *inspect.Primitive {
	for i := range ps {
		if ps[i].Kind == kind && ps[i].Name == name {
			return &ps[i]
		}
	}
	return nil
}

func TestListShowsHoldersAndWaitersInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := fmt.Sprintf("inspect-list-%d/", time.Now().UnixNano()) // barriers and queues outlive sessions
	s1, s2, s3 := newSession(t, ctx, root), newSession(t, ctx, root), newSession(t, ctx, root)

	// A lock held by s1 with s2 then s3 waiting.
	m1 := lock.NewMutex(s1, "backup")
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go lock.NewMutex(s2, "backup").Lock(wctx)
	waitFor(t, ctx, root, func(ps []inspect.Primitive) bool {
		p := find(ps, "lock", "backup")
		return p != nil && len(p.Waiters) == 1
	})
	go lock.NewMutex(s3, "backup").Lock(wctx)

	// An election with a leader and a follower.
	if err := election.New(s1, "api").Campaign(ctx, "replica-1"); err != nil {
		t.Fatal(err)
	}
	go election.New(s2, "api").Campaign(wctx, "replica-2")

	// A semaphore of 3: weights 2 and 1 held, 2 waiting.
	if _, err := semaphore.New(s1, "gpu", 3).Acquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := semaphore.New(s2, "gpu", 3).Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	go semaphore.New(s3, "gpu", 3).Acquire(wctx, 2)

	// A held barrier and a queue with two ready messages and one claimed.
	if err := barrier.New(srv.Client(), "deploy", barrier.WithPrefix(root)).Hold(ctx); err != nil {
		t.Fatal(err)
	}
	q := queue.New(srv.Client(), "jobs", queue.WithPrefix(root))
	for i := 0; i < 3; i++ {
		if _, err := q.Enqueue(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Claim(ctx, s3); err != nil {
		t.Fatal(err)
	}

	ps := waitFor(t, ctx, root, func(ps []inspect.Primitive) bool {
		l, e, g := find(ps, "lock", "backup"), find(ps, "election", "api"), find(ps, "semaphore", "gpu")
		return l != nil && len(l.Waiters) == 2 && e != nil && len(e.Waiters) == 1 && g != nil && len(g.Waiters) == 1
	})
	l := find(ps, "lock", "backup")
	if l.Holders[0].Token != m1.Token() || l.Holders[0].Lease != int64(s1.Lease()) {
		t.Errorf("lock holder %+v, want token %d lease %x", l.Holders[0], m1.Token(), s1.Lease())
	}
	if l.Waiters[0].Lease != int64(s2.Lease()) || l.Waiters[1].Lease != int64(s3.Lease()) {
		t.Errorf("waiters out of order: %+v", l.Waiters)
	}
	if l.Holders[0].Since.IsZero() || time.Since(l.Holders[0].Since) > time.Minute || l.Holders[0].TTLLeft <= 0 || l.Holders[0].Owner == "" {
		t.Errorf("holder lacks since/ttl/owner: %+v", l.Holders[0])
	}
	e := find(ps, "election", "api")
	if e.Holders[0].Value != "replica-1" || e.Waiters[0].Value != "replica-2" {
		t.Errorf("election: %+v", e)
	}
	g := find(ps, "semaphore", "gpu")
	if len(g.Holders) != 2 || g.Info["capacity"] != "3" || g.Info["in use"] != "3" || g.Waiters[0].Weight != 2 {
		t.Errorf("semaphore: %+v", g)
	}
	if b := find(ps, "barrier", "deploy"); b == nil || b.Info["state"] != "held" {
		t.Errorf("barrier: %+v", b)
	}
	if qq := find(ps, "queue", "jobs"); qq == nil || qq.Info["ready"] != "2" || qq.Info["claimed"] != "1" {
		t.Errorf("queue: %+v", qq)
	}
	var b bytes.Buffer
	inspect.Render(&b, ps)
	for _, want := range []string{"KIND", "ROLE", `"backup"`, "holder", "waiter 2", `"gpu"`, "weight 2", "leader", "candidate 1", `"replica-1"`, "capacity=3"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("render lacks %q:\n%s", want, b.String())
		}
	}

	// Get agrees with List for one name, and names never bleed: "backup"
	// does not show "backup/x".
	lock.NewMutex(s1, "backup/x").Lock(ctx)
	one, err := inspect.Get(ctx, srv.Client(), root, "lock", "backup")
	if err != nil || len(one.Waiters) != 2 || one.Holders[0].Token != m1.Token() {
		t.Fatalf("Get: %+v %v", one, err)
	}
}

func TestNothingInUse(t *testing.T) {
	ps, err := inspect.List(context.Background(), srv.Client(), "inspect-empty")
	if err != nil || len(ps) != 0 {
		t.Fatalf("List = %v, %v", ps, err)
	}
	var b bytes.Buffer
	inspect.Render(&b, ps)
	if !strings.Contains(b.String(), "nothing in use") {
		t.Fatal(b.String())
	}
}

// A primitive whose last user has gone leaves keys behind (a semaphore's
// capacity, a barrier's released mark); List must not show it as in use.
func TestListSkipsWhatNobodyUses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := fmt.Sprintf("inspect-stale-%d/", time.Now().UnixNano())
	s := newSession(t, ctx, root)
	p, err := semaphore.New(s, "gpu", 2).Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Release(ctx); err != nil {
		t.Fatal(err)
	}
	b := barrier.New(srv.Client(), "deploy", barrier.WithPrefix(root))
	if err := b.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
	m := lock.NewMutex(s, "backup")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	ps, err := inspect.List(ctx, srv.Client(), root)
	if err != nil || len(ps) != 0 {
		var b bytes.Buffer
		inspect.Render(&b, ps)
		t.Fatalf("List = %v:\n%s\nwant nothing in use", err, b.String())
	}
	// Get still answers for one name: the capacity is there.
	g, err := inspect.Get(ctx, srv.Client(), root, "semaphore", "gpu")
	if err != nil || g.Info["capacity"] != "2" || g.InUse() {
		t.Fatalf("Get = %+v, %v", g, err)
	}
	if _, err := inspect.Get(ctx, srv.Client(), root, "mutex", "backup"); err == nil {
		t.Fatal("Get of an unknown kind succeeded")
	}
}
