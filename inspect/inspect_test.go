package inspect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
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
	"golang.org/x/sync/errgroup"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) {
	if root := os.Getenv("COORD_INSPECT_LIST_ROOT"); root != "" {
		os.Exit(listChild(root, strings.Split(os.Getenv("COORD_INSPECT_ENDPOINTS"), ",")))
	}
	etcdtest.Main(m, &srv, etcdtest.WithoutFsync())
}

// listResult is what listChild measured, for the parent test.
type listResult struct {
	Primitives, Waiters42 int
	Ready                 string
	RPCs, Bytes           int64
	TotalAlloc, PeakHeap  uint64
}

// listChild runs one List in a process of its own (the test binary run
// again), so that its memory is the client's alone and not the embedded
// server's, and prints what it measured.
func listChild(root string, endpoints []string) int {
	c := etcdtest.NewCounter()
	cli, err := etcdtest.NewClient(endpoints, etcdtest.WithCounter(c))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var peak atomic.Uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc > peak.Load() {
			peak.Store(ms.HeapAlloc)
		}
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				sample()
			}
		}
	}()
	ps, err := inspect.List(ctx, cli, root)
	close(stop)
	<-sampled
	sample()
	runtime.ReadMemStats(&after)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	res := listResult{Primitives: len(ps), RPCs: c.Total(), Bytes: c.Bytes(), TotalAlloc: after.TotalAlloc - before.TotalAlloc, PeakHeap: peak.Load()}
	if q := find(ps, "queue", "jobs"); q != nil {
		res.Ready = q.Info["ready"]
	}
	if l := find(ps, "lock", "l00042"); l != nil && len(l.Holders) == 1 {
		res.Waiters42 = len(l.Waiters)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
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
	leader := election.New(s1, "api")
	if err := leader.Campaign(ctx, "replica-1"); err != nil {
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
	claimed, err := q.Claim(ctx, s3)
	if err != nil {
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
	if e.Holders[0].Value != "replica-1" || e.Waiters[0].Value != "replica-2" || e.Holders[0].Token != leader.Token() {
		t.Errorf("election: %+v, want replica-1 leading with token %d", e, leader.Token())
	}
	g := find(ps, "semaphore", "gpu")
	if len(g.Holders) != 2 || g.Info["capacity"] != "3" || g.Info["in use"] != "3" || g.Waiters[0].Weight != 2 {
		t.Errorf("semaphore: %+v", g)
	}
	if b := find(ps, "barrier", "deploy"); b == nil || b.Info["state"] != "held" {
		t.Errorf("barrier: %+v", b)
	}
	qq := find(ps, "queue", "jobs")
	if qq == nil || qq.Info["ready"] != "2" || qq.Info["claimed"] != "1" || len(qq.Holders) != 1 || qq.Holders[0].Value != claimed.ID {
		t.Errorf("queue: %+v, want message %s claimed", qq, claimed.ID)
	}
	// Every holder and waiter of every kind says since when it asked.
	for _, p := range ps {
		for _, m := range append(append([]inspect.Member(nil), p.Holders...), p.Waiters...) {
			if m.Since.IsZero() || time.Since(m.Since) > time.Minute {
				t.Errorf("%s %q: member %s has no age (since %v)", p.Kind, p.Name, m.Key, m.Since)
			}
		}
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

// List pages through a root of 100,000 keys and never reads a queue's
// payloads: measured in a process of its own, its reads stay far below
// the payloads' size and its heap under 50 MB. (It used to read the whole
// root, payloads included, in one Get.)
func TestListPagesAndNeverReadsPayloads(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 keys")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	root := fmt.Sprintf("inspect-big-%d/", time.Now().UnixNano())
	s := newSession(t, ctx, root)
	// A queue of 1,000 messages of 32 KiB: 2,000 keys, 32 MB of payloads.
	const messages, payload = 1000, 32 << 10
	q := queue.New(srv.Client(), "jobs", queue.WithPrefix(root))
	body := bytes.Repeat([]byte("x"), payload)
	var g errgroup.Group
	g.SetLimit(32)
	for range messages {
		g.Go(func() error { _, err := q.Enqueue(ctx, body); return err })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// 98,000 more keys: 4,900 locks with a holder and 19 waiters each,
	// written as the lock writes them (records on the session's lease).
	const locks, line = 4900, 20
	rec := `{"since":"` + time.Now().UTC().Format(time.RFC3339Nano) + `"}`
	for i := 0; i < locks*line; i += 100 {
		g.Go(func() error {
			var ops []clientv3.Op
			for j := i; j < i+100; j++ {
				ops = append(ops, clientv3.OpPut(fmt.Sprintf("%slock/l%05d/w/%016x", root, j/line, j), rec, clientv3.WithLease(s.Lease())))
			}
			_, err := srv.Client().Txn(ctx).Then(ops...).Commit()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), "COORD_INSPECT_LIST_ROOT="+root, "COORD_INSPECT_ENDPOINTS="+strings.Join(srv.Endpoints(), ","))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the listing process: %v", err)
	}
	var res listResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("the listing process printed %q: %v", out, err)
	}
	t.Logf("List of %d keys: %d primitives, %d RPCs, %.1f MB read, %.1f MB allocated, peak heap %.1f MB",
		messages*2+locks*line, res.Primitives, res.RPCs, float64(res.Bytes)/1e6, float64(res.TotalAlloc)/1e6, float64(res.PeakHeap)/1e6)
	if res.Primitives != locks+1 || res.Ready != fmt.Sprint(messages) || res.Waiters42 != line-1 {
		t.Fatalf("listed %+v, want %d primitives, %d ready, 19 waiters on l00042", res, locks+1, messages)
	}
	if res.Bytes > messages*payload/2 {
		t.Errorf("List read %.1f MB: it read payloads (%.1f MB of them)", float64(res.Bytes)/1e6, float64(messages*payload)/1e6)
	}
	if res.PeakHeap > 50<<20 {
		t.Errorf("List's heap peaked at %.1f MB, want under 50 MB", float64(res.PeakHeap)/1e6)
	}
}
