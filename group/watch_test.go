package group_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
)

// Watch sends the members now, then one view per change, each saying what
// changed: joins, metadata updates, a Leave, a session's end.
func TestWatchSendsEveryChange(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	r := root(t)
	sa := newSession(t, srv.Client(), r)
	a := join(t, sa, "g", "a", map[string]string{"v": "1"})
	ch := group.New(srv.Client(), "g", group.WithPrefix(r)).Watch(ctx)
	v := next(t, ch, 5*time.Second)
	if ids(v.Members) != "a" || ids(v.Joined) != "a" || v.Rev == 0 {
		t.Fatalf("first view %+v", v)
	}
	b := join(t, newSession(t, srv.Client(), r), "g", "b", nil)
	v2 := next(t, ch, 5*time.Second)
	if ids(v2.Members) != "a,b" || ids(v2.Joined) != "b" || len(v2.Left)+len(v2.Updated) != 0 || v2.Rev <= v.Rev {
		t.Fatalf("after b joined: %+v", v2)
	}
	if err := a.SetMeta(ctx, map[string]string{"v": "2"}); err != nil {
		t.Fatal(err)
	}
	v3 := next(t, ch, 5*time.Second)
	if ids(v3.Updated) != "a" || len(v3.Joined)+len(v3.Left) != 0 {
		t.Fatalf("after a's update: %+v", v3)
	}
	if m, _ := v3.Get("a"); m.Meta["v"] != "2" || m.Token != a.Token() {
		t.Fatalf("a in the view after its update: %+v", m)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if v4 := next(t, ch, 5*time.Second); ids(v4.Members) != "a" || ids(v4.Left) != "b" {
		t.Fatalf("after b left: %+v", v4)
	}
	sa.Close()
	if v5 := next(t, ch, 5*time.Second); len(v5.Members) != 0 || ids(v5.Left) != "a" {
		t.Fatalf("after a's session closed: %+v", v5)
	}
}

// A slow receiver misses nothing: 40 joins and leaves made while nobody
// reads arrive as 40 views, in revision order, none merged.
func TestWatchQueuesForSlowReceiver(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	r := root(t)
	s := newSession(t, srv.Client(), r)
	ch := group.New(srv.Client(), "g", group.WithPrefix(r)).Watch(ctx)
	if v := next(t, ch, 5*time.Second); len(v.Members) != 0 {
		t.Fatalf("first view of an empty group: %+v", v)
	}
	for i := range 20 {
		m := join(t, s, "g", fmt.Sprintf("m%d", i), nil)
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var last int64
	for i := range 40 {
		v := next(t, ch, 5*time.Second)
		want := fmt.Sprintf("m%d", i/2)
		if v.Rev <= last || (i%2 == 0 && (ids(v.Joined) != want || ids(v.Members) != want)) || (i%2 == 1 && (ids(v.Left) != want || len(v.Members) != 0)) {
			t.Fatalf("view %d: %+v (previous rev %d)", i, v, last)
		}
		last = v.Rev
	}
}

// A watch cut off from etcd while members come and go, with the history
// compacted meanwhile, reports every join and leave across the gap.
func TestWatchAcrossAGapAndCompaction(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	ctx := ctxT(t, 60*time.Second)
	r := root(t)
	// The watcher talks to etcd through a proxy of its own.
	px := etcdtest.NewProxy(t, c.Endpoints()[0])
	wcli := etcdtest.NewTestClient(t, px.Endpoints())
	ch := group.New(wcli, "g", group.WithPrefix(r)).Watch(ctx)
	s := newSession(t, c.Client(), r, session.WithTTL(5*time.Second))
	stay := join(t, s, "g", "stay", nil)
	gone := join(t, s, "g", "gone", nil)
	for v := next(t, ch, 10*time.Second); ids(v.Members) != "gone,stay"; v = next(t, ch, 10*time.Second) {
	}
	px.Blackhole()
	// Changes the watcher cannot see, then the history compacted away.
	if err := gone.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	newer := join(t, s, "g", "newer", map[string]string{"k": "v"})
	if err := stay.SetMeta(ctx, map[string]string{"seen": "later"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	px.Reset() // drop its connections, as a broken network would
	px.Restore()
	v := next(t, ch, 30*time.Second)
	if ids(v.Members) != "newer,stay" || ids(v.Joined) != "newer" || ids(v.Left) != "gone" || ids(v.Updated) != "stay" {
		t.Fatalf("view after the gap: members %s joined %s left %s updated %s", ids(v.Members), ids(v.Joined), ids(v.Left), ids(v.Updated))
	}
	if m, _ := v.Get("newer"); m.Token != newer.Token() || m.Meta["k"] != "v" {
		t.Fatalf("newer after the gap: %+v", m)
	}
}
