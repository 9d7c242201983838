package hold

import (
	"context"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A hold with a lock-delay creates its mark with its key and deletes both
// in one request; a key lost with its lease leaves the mark, which makes
// the next hold's Admit wait for a delay key that etcd expires.
func TestLockDelayMarks(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 30*time.Second)
	base := "hold-test/" + etcdtest.Name(t) + "/"
	cfg := &Config{Kind: "test", Names: []string{"t"}, Label: `test "t"`, Errors: Errors{Lost: errLost, NotHeld: errNotHeld}, Delay: time.Second}
	a := newLease(t, srv.Client(), 10*time.Second)
	hub := watch.For(a.Client())
	mk := func(id string) *Hold {
		return New(a, cfg, keys.Record{}, Key{Key: base + "w/" + id, Watch: watch.MirrorOf{Hub: hub, Base: base}})
	}
	count := func(p string) int64 {
		resp, err := srv.Client().Get(ctx, base+p, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}

	h := mk(a.NextID())
	c, err := h.Create(ctx, Spec{})
	if err != nil || c.Failed() {
		t.Fatal(c, err)
	}
	if !h.quiet || count(keys.PartMark+"/") != 1 {
		t.Fatalf("after an uncontended create: quiet %v, %d marks", h.quiet, count(keys.PartMark+"/"))
	}
	if err := h.Admit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(""); n != 0 {
		t.Fatalf("%d keys left after a clean release", n)
	}

	// Lost with its lease: the mark stays.
	b := newLease(t, srv.Client(), 10*time.Second)
	lost := New(b, cfg, keys.Record{}, Key{Key: base + "w/" + b.NextID(), Watch: watch.MirrorOf{Hub: hub, Base: base}})
	if _, err := lost.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	if err := lost.Admit(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := srv.Client().Revoke(ctx, b.Lease()); err != nil {
		t.Fatal(err)
	}
	if count("w/") != 0 || count(keys.PartMark+"/") != 1 {
		t.Fatal("a lost key's mark did not stay")
	}
	next := mk(a.NextID())
	if _, err := next.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	if next.quiet {
		t.Fatal("a create that saw a dead mark thinks nothing is owed")
	}
	if err := next.Admit(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("admitted %v after the loss, before the delay", waited)
	}
	if count(keys.LeafDelay) != 0 || count(keys.PartMark+"/") != 1 {
		t.Fatal("the delay key outlived its lease, or the dead mark was not used up")
	}

	// A hold abandoned after its session ended still takes its mark along.
	c2 := newLease(t, srv.Client(), 10*time.Second)
	w := New(c2, cfg, keys.Record{}, Key{Key: base + "w/" + c2.NextID(), Watch: watch.MirrorOf{Hub: hub, Base: base}})
	if _, err := w.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	w.Abandon(context.Background())
	if _, err := next.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(""); n != 0 {
		t.Fatalf("%d keys left: a mark of an abandoned hold, or of a released one", n)
	}
}
