package hold

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

var errLost = errors.New("test: lost")
var errNotHeld = errors.New("test: not held")

func newLease(t *testing.T, cli *clientv3.Client, ttl time.Duration) *lease.Session {
	t.Helper()
	s, err := lease.New(etcdtest.Context(t, 10*time.Second), cli, lease.Config{TTL: ttl, Root: "hold-test/", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newHold(s *lease.Session, key string) *Hold {
	cfg := &Config{Kind: "test", Names: []string{"t"}, Label: `test "t"`, Errors: Errors{Lost: errLost, NotHeld: errNotHeld}}
	return New(s, cfg, keys.Record{}, Key{Key: key, Watch: watch.RangeOf{Hub: watch.For(s.Client()), Key: key, End: keys.RangeEnd(key)}})
}

func exists(t *testing.T, key string) bool {
	t.Helper()
	resp, err := srv.Client().Get(etcdtest.Context(t, 5*time.Second), key)
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Kvs) == 1
}

// A create that reaches etcd after its hold was abandoned (a request held
// up in a partition, delivered after its caller gave up and cleaned up)
// must not bring the key back: the abandon moved the session's fence.
func TestAbandonedCreateDeliveredLateDoesNothing(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 10*time.Second)
	s := newLease(t, srv.Client(), 10*time.Second)
	key := "hold-test/late/" + s.NextID()
	h := newHold(s, key)
	// The request as Create sends it, kept to be delivered late.
	cmps, then, els := createOps([]*Hold{h}, Spec{})
	h.mu.Lock()
	h.ambiguous = true // its answer was lost
	h.mu.Unlock()
	h.Abandon(ctx)
	resp, err := srv.Client().Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Succeeded || exists(t, key) {
		t.Fatal("a create delivered after its hold was abandoned brought the key back")
	}
	// The session's next create learns the moved fence and succeeds.
	h2 := newHold(s, "hold-test/late/"+s.NextID())
	if c, err := h2.Create(ctx, Spec{}); err != nil || c.Failed() {
		t.Fatalf("create after a fence move: %+v, %v", c, err)
	}
}

// The fence is one key per session, however many waits it abandons.
func TestAbandonLeavesNoMarkPerKey(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 20*time.Second)
	s := newLease(t, srv.Client(), 10*time.Second)
	prefix := "hold-test/many-" + s.NextID() + "/"
	for range 200 {
		h := newHold(s, prefix+s.NextID())
		if _, err := h.Create(ctx, Spec{}); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		h.ambiguous = true
		h.mu.Unlock()
		h.Abandon(ctx)
	}
	resp, err := srv.Client().Get(ctx, "hold-test/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if clientv3.LeaseID(kv.Lease) == s.Lease() && !strings.HasPrefix(string(kv.Key), "hold-test/session/") {
			t.Fatalf("200 abandoned holds left %s behind", kv.Key)
		}
	}
}

// Abandon deletes at once, or in the background once etcd is reachable
// again, even with a cancelled context.
func TestAbandonDeletesNowOrInTheBackground(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := etcdtest.Context(t, 30*time.Second)
	s := newLease(t, cli, 20*time.Second)
	now := newHold(s, "hold-test/now/"+s.NextID())
	if _, err := now.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	now.Abandon(ctx)
	if exists(t, now.Key()) {
		t.Fatal("Abandon left the key")
	}
	later := newHold(s, "hold-test/later/"+s.NextID())
	if _, err := later.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	p.Blackhole()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	later.Abandon(cancelled)
	p.Restore()
	deadline := time.Now().Add(15 * time.Second)
	for exists(t, later.Key()) {
		if time.Now().After(deadline) {
			t.Fatal("background abandon did not delete the key within 15s of the network healing")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
}

// A release whose answer is lost and is retried is a clean release, not
// a loss; a key gone before the first release is a loss, and a release
// after a known loss makes no request.
func TestReleaseRetryAndLoss(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 20*time.Second)
	s := newLease(t, srv.Client(), 10*time.Second)
	h := newHold(s, "hold-test/rel/"+s.NextID())
	if _, err := h.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	if err := h.Grant(); err != nil {
		t.Fatal(err)
	}
	// The first release's answer was lost: it did delete the key.
	h.mu.Lock()
	h.st = releasing
	h.mu.Unlock()
	srv.Client().Delete(ctx, h.Key())
	if _, err := h.Release(ctx); err != nil {
		t.Fatalf("retried release after an applied one: %v, want nil", err)
	}
	if h.Lost() != nil {
		t.Fatal("a clean release was counted as a loss")
	}

	g := newHold(s, "hold-test/rel/"+s.NextID())
	if _, err := g.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	if err := g.Grant(); err != nil {
		t.Fatal(err)
	}
	done := g.Done()
	srv.Client().Delete(ctx, g.Key()) // an operator deletes it
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed within 5s of the key's deletion")
	}
	if err := g.Lost(); !errors.Is(err, errLost) || !errors.Is(err, watch.ErrGone) {
		t.Fatalf("Lost = %v, want errLost wrapping ErrGone", err)
	}
	// Release after a known loss: the loss, at once, through a client that
	// could not even reach etcd.
	cli, _ := etcdtest.NewClient(srv.Endpoints())
	cli.Close()
	start := time.Now()
	if _, err := g.Release(ctx); !errors.Is(err, errLost) || time.Since(start) > time.Second {
		t.Fatalf("Release after loss = %v in %v, want errLost at once", err, time.Since(start))
	}
}

// Rewrite, guarded by IsOwner, changes a held key's record and keeps it
// on the lease and as created (the hold's watch sees no loss); the same
// Txn after the key went brings nothing back.
func TestRewriteUnderIsOwner(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 10*time.Second)
	s := newLease(t, srv.Client(), 10*time.Second)
	key := "hold-test/rewrite/" + s.NextID()
	h := newHold(s, key)
	if _, err := h.Create(ctx, Spec{}); err != nil {
		t.Fatal(err)
	}
	if err := h.Grant(); err != nil {
		t.Fatal(err)
	}
	done := h.Done()
	rewrite := func() bool {
		resp, err := s.Client().Txn(ctx).If(h.IsOwner()...).Then(h.Rewrite(keys.Record{N: 7})).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !rewrite() {
		t.Fatal("a rewrite guarded by IsOwner failed on a held key")
	}
	resp, err := srv.Client().Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	kv := resp.Kvs[0]
	rec, err := keys.DecodeRecord(kv.Value)
	if err != nil || rec.N != 7 || !rec.Since.Equal(h.Record().Since.UTC()) {
		t.Fatalf("rewritten record %s (%v), want n 7 and the creation's since", kv.Value, err)
	}
	if kv.Lease != int64(s.Lease()) || kv.CreateRevision != h.Rev() {
		t.Fatalf("rewritten key: lease %x, create rev %d; want lease %x, create rev %d", kv.Lease, kv.CreateRevision, s.Lease(), h.Rev())
	}
	select {
	case <-done:
		t.Fatalf("a rewrite was seen as a loss: %v", h.Lost())
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if rewrite() || exists(t, key) {
		t.Fatal("a guarded rewrite after the release brought the key back")
	}
}

func newNamed(s *lease.Session, key string) *Hold {
	cfg := &Config{Kind: "test", Names: []string{"t"}, Label: `test "t"`, Errors: Errors{Lost: errLost, NotHeld: errNotHeld}, Named: true}
	return New(s, cfg, keys.Record{}, Key{Key: key, Watch: watch.RangeOf{Hub: watch.For(s.Client()), Key: key, End: keys.RangeEnd(key)}})
}

// A named key is one holder's at a time: a second hold finds it Taken
// (not its own from an earlier attempt), and neither that hold's
// Abandon, nor a late retry of the first holder's Release, nor an
// ambiguous create's retirement ever deletes a key of another holder.
func TestNamedHoldTouchesOnlyItsOwnKey(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 20*time.Second)
	s1 := newLease(t, srv.Client(), 10*time.Second)
	s2 := newLease(t, srv.Client(), 10*time.Second)
	key := "hold-test/named/" + s1.NextID()

	a := newNamed(s1, key)
	if c, err := a.Create(ctx, Spec{}); err != nil || c.Failed() || c.Taken {
		t.Fatalf("first create: %+v, %v", c, err)
	}
	if err := a.Grant(); err != nil {
		t.Fatal(err)
	}
	// The same session, another hold: taken, not "created by an earlier
	// attempt".
	for _, s := range []*lease.Session{s1, s2} {
		b := newNamed(s, key)
		c, err := b.Create(ctx, Spec{})
		if err != nil || !c.Taken || !c.Failed() {
			t.Fatalf("create of a held name: %+v, %v; want Taken", c, err)
		}
		b.Abandon(ctx)
	}
	// An ambiguous create's retirement compares the value: the key is a's.
	c := newNamed(s2, key)
	c.mu.Lock()
	c.ambiguous = true
	c.mu.Unlock()
	c.Abandon(ctx)
	if !exists(t, key) || a.Lost() != nil {
		t.Fatal("another hold's abandon deleted the holder's named key")
	}

	// a's key goes from outside, and a successor takes the name before a
	// (which never watched for its loss) lets go: a's Release must not
	// delete the successor's key, and reports the loss.
	if _, err := srv.Client().Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	d := newNamed(s2, key)
	if c, err := d.Create(ctx, Spec{}); err != nil || c.Failed() {
		t.Fatalf("create after the key went: %+v, %v", c, err)
	}
	if err := d.Grant(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Release(ctx); !errors.Is(err, errLost) {
		t.Fatalf("release of a key taken over: %v, want the loss", err)
	}
	if !exists(t, key) || d.Lost() != nil {
		t.Fatal("the predecessor's release deleted the successor's key")
	}
	// An ambiguous create retried finds its own key and says so.
	resp, _ := srv.Client().Get(ctx, key)
	if d.Rev() != resp.Kvs[0].CreateRevision {
		t.Fatalf("token %d, key created at %d", d.Rev(), resp.Kvs[0].CreateRevision)
	}
	if _, err := d.Release(ctx); err != nil {
		t.Fatal(err)
	}
	e := newNamed(s2, key)
	cmps, then, els := createOps([]*Hold{e}, Spec{})
	if _, err := srv.Client().Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit(); err != nil {
		t.Fatal(err)
	}
	if c, err := e.Create(ctx, Spec{}); err != nil || !c.Existed || c.Taken {
		t.Fatalf("retry of a create that landed: %+v, %v; want Existed", c, err)
	}
}
