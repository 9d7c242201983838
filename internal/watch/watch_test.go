package watch_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

// line puts keys a (first) and b (second) in part "w" of base and returns
// the waiter for b.
func line(t *testing.T, cli *clientv3.Client, base string) *watch.Waiter {
	t.Helper()
	ctx := etcdtest.Context(t, 20*time.Second)
	for {
		if _, err := cli.Put(ctx, base+"w/a", "first"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Put(ctx, base+"w/b", "second")
	if err != nil {
		t.Fatal(err)
	}
	return &watch.Waiter{Key: base + "w/b", Rev: resp.Header.Revision, Arg: []string{"w"}}
}

func startWait(ctx context.Context, cli *clientv3.Client, base string, w *watch.Waiter) <-chan error {
	errc := make(chan error, 1)
	go func() {
		m := watch.For(cli).Mirror(base)
		defer m.Release()
		errc <- m.Waitlist("first", watch.First).Wait(ctx, w)
	}()
	return errc
}

func notYet(t *testing.T, errc <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-errc:
		t.Fatalf("wait ended early: %v", err)
	case <-time.After(d):
	}
}

func within(t *testing.T, errc <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("wait did not end within %v", d)
		return nil
	}
}

func TestFirstWakesWhenOlderKeysGo(t *testing.T) {
	t.Parallel()
	cli := srv.Client()
	base := etcdtest.Name(t) + "/"
	w := line(t, cli, base)
	errc := startWait(etcdtest.Context(t, 30*time.Second), cli, base, w)
	// Later keys and rewrites of the older one do not end it.
	cli.Put(context.Background(), base+"w/z", "later")
	cli.Put(context.Background(), base+"w/a", "rewritten")
	notYet(t, errc, 200*time.Millisecond)
	cli.Delete(context.Background(), base+"w/a")
	if err := within(t, errc, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWaitReportsOwnKeyDeleted(t *testing.T) {
	t.Parallel()
	cli := srv.Client()
	base := etcdtest.Name(t) + "/"
	w := line(t, cli, base)
	errc := startWait(etcdtest.Context(t, 30*time.Second), cli, base, w)
	notYet(t, errc, 100*time.Millisecond)
	cli.Delete(context.Background(), w.Key)
	if err := within(t, errc, 2*time.Second); !errors.Is(err, watch.ErrGone) {
		t.Fatalf("err = %v, want ErrGone", err)
	}
}

// One watch per range per process, however many wait on it.
func TestOneWatchPerRange(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	base := etcdtest.Name(t) + "/"
	ctx := etcdtest.Context(t, 30*time.Second)
	cli.Put(ctx, base+"w/0", "holder")
	var errs []<-chan error
	for i := range 50 {
		resp, _ := cli.Put(ctx, fmt.Sprintf("%sw/%02d", base, i+1), "")
		errs = append(errs, startWait(ctx, cli, base, &watch.Waiter{Key: fmt.Sprintf("%sw/%02d", base, i+1), Rev: resp.Header.Revision, Arg: []string{"w"}}))
	}
	notYet(t, errs[0], 200*time.Millisecond)
	if n := c.Get("Watch.Create"); n != 1 {
		t.Fatalf("50 waiters opened %d watches, want 1", n)
	}
	// Each departure lets exactly the next one through, in order.
	prev := base + "w/0"
	for i, errc := range errs {
		cli.Delete(ctx, prev)
		if err := within(t, errc, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		if i+1 < len(errs) {
			notYet(t, errs[i+1], 20*time.Millisecond)
		}
		prev = fmt.Sprintf("%sw/%02d", base, i+1)
	}
}

func TestWaitAndHoldSurviveCompaction(t *testing.T) {
	t.Parallel()
	s := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := s.Client()
	ctx := etcdtest.Context(t, 30*time.Second)
	base := "compact/"
	w := line(t, cli, base)
	errc := startWait(ctx, cli, base, w)
	gone := make(chan error, 1)
	stop := watch.MirrorOf{Hub: watch.For(cli), Base: base}.WatchGone(w.Key, w.Rev, func(err error) { gone <- err })
	defer stop()
	for i := range 10 {
		cli.Put(ctx, "noise", fmt.Sprint(i))
		if err := s.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	notYet(t, errc, 100*time.Millisecond)
	cli.Delete(ctx, base+"w/a")
	if err := within(t, errc, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-gone:
		t.Fatalf("hold lost through compaction: %v", err)
	default:
	}
	cli.Delete(ctx, w.Key)
	if err := within(t, gone, 2*time.Second); !errors.Is(err, watch.ErrGone) {
		t.Fatalf("hold: %v, want ErrGone", err)
	}
}

// A closed client ends every wait and every watched hold at once with
// ErrClientClosed: nothing spins reopening watches on a closed client.
func TestClosedClientEndsWaitsAtOnce(t *testing.T) {
	t.Parallel()
	cli, err := srv.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	base := etcdtest.Name(t) + "/"
	w := line(t, cli, base)
	errc := startWait(etcdtest.Context(t, 30*time.Second), cli, base, w)
	gone := make(chan error, 1)
	watch.RangeOf{Hub: watch.For(cli), Key: w.Key, End: w.Key + "\x00"}.WatchGone(w.Key, w.Rev, func(err error) { gone <- err })
	notYet(t, errc, 100*time.Millisecond)
	cli.Close()
	for _, c := range []<-chan error{errc, gone} {
		if err := within(t, c, time.Second); !errors.Is(err, etcderr.ErrClientClosed) {
			t.Fatalf("after Close: %v, want ErrClientClosed", err)
		}
	}
	deadline := time.Now().Add(time.Second)
	for watch.For(cli).Stats().Feeds != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("feeds still open a second after the client closed: %+v", watch.For(cli).Stats())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// TestWaitSurvivesMemberRestarts kills and restarts every member in turn
// while a waiter waits on a 3-member cluster, compacting while each member
// is down so a resumed watch would start at a compacted revision, and
// deletes the older key while the waiter's member may be down. The wait
// must neither end early nor miss the delete, and the watched hold must
// not be reported lost.
func TestWaitSurvivesMemberRestarts(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	cli, err := c.NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.Client()
	ctx := etcdtest.Context(t, 120*time.Second)
	base := "restarts/"
	w := line(t, cli, base)
	errc := startWait(ctx, cli, base, w)
	gone := make(chan error, 1)
	stop := watch.MirrorOf{Hub: watch.For(cli), Base: base}.WatchGone(w.Key, w.Rev, func(err error) { gone <- err })
	defer stop()
	retry := func(f func(context.Context) error) {
		for {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := f(rctx)
			cancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 3 {
		c.Kill(i)
		retry(func(ctx context.Context) error { _, err := admin.Put(ctx, "noise", fmt.Sprint(i)); return err })
		retry(func(ctx context.Context) error { return c.Compact(ctx) })
		if i == 2 {
			retry(func(ctx context.Context) error { _, err := admin.Delete(ctx, base+"w/a"); return err })
		} else {
			notYet(t, errc, 50*time.Millisecond)
		}
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := within(t, errc, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-gone:
		t.Fatalf("hold lost across restarts: %v", err)
	default:
	}
}

// goneWatcher is what MirrorOf and RangeOf have in common.
type goneWatcher interface {
	WatchGone(key string, rev int64, gone func(error)) (stop func())
}

// Many holds on one mirror, or one feed: a key's deletion, its
// replacement by a key of the same name, and a gap in the watch (a
// reload) each fire the holds of the keys they touched, once, and no
// other; a hold registered before the watch has seen its key waits for
// it; one registered long after its key went fires at once. The holds
// share the watch: none has a goroutine of its own.
func TestGoneFiresOnlyForItsKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"mirror", "range"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			base := fmt.Sprintf("goneset-%s-%d/", kind, time.Now().UnixNano())
			px := etcdtest.NewProxy(t, srv.Endpoints()[0])
			cli := etcdtest.NewTestClient(t, px.Endpoints())
			var w goneWatcher = watch.MirrorOf{Hub: watch.For(cli), Base: base}
			if kind == "range" {
				w = watch.RangeOf{Hub: watch.For(cli), Key: base, End: base + "\xff"}
			}
			testGoneFiresOnlyForItsKeys(t, px, base, w)
		})
	}
}

func testGoneFiresOnlyForItsKeys(t *testing.T, px *etcdtest.Proxy, base string, gw goneWatcher) {
	ctx := etcdtest.Context(t, 20*time.Second)
	// A first hold, fired, so that the watch runs and is current when the
	// others are registered (they are checked against what it holds).
	resp, err := srv.Client().Put(ctx, base+"anchor", "x")
	if err != nil {
		t.Fatal(err)
	}
	anchor := make(chan error, 1)
	defer gw.WatchGone(base+"anchor", resp.Header.Revision, func(err error) { anchor <- err })()
	srv.Client().Delete(ctx, base+"anchor")
	if err := within(t, anchor, 5*time.Second); !errors.Is(err, watch.ErrGone) {
		t.Fatalf("anchor hold: %v", err)
	}
	const n = 50
	fired := make([]chan error, n)
	revs := make([]int64, n)
	for i := range n {
		resp, err := srv.Client().Put(ctx, fmt.Sprintf("%sh/%02d", base, i), "x")
		if err != nil {
			t.Fatal(err)
		}
		revs[i] = resp.Header.Revision
	}
	before := runtime.NumGoroutine()
	for i := range n {
		fired[i] = make(chan error, 2)
		stop := gw.WatchGone(fmt.Sprintf("%sh/%02d", base, i), revs[i], func(err error) { fired[i] <- err })
		defer stop()
	}
	if grew := runtime.NumGoroutine() - before; grew > n/5 {
		t.Fatalf("%d holds started %d goroutines", n, grew)
	}
	expect := func(want ...int) {
		t.Helper()
		for _, i := range want {
			select {
			case err := <-fired[i]:
				if !errors.Is(err, watch.ErrGone) {
					t.Fatalf("hold %d: %v", i, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("hold %d did not fire", i)
			}
		}
		time.Sleep(100 * time.Millisecond) // a short look for holds that fire though they should not
		for i := range n {
			select {
			case err := <-fired[i]:
				t.Fatalf("hold %d fired (%v); only %v should have", i, err, want)
			default:
			}
		}
	}
	srv.Client().Delete(ctx, base+"h/03")
	expect(3)
	srv.Client().Delete(ctx, base+"h/04")
	srv.Client().Put(ctx, base+"h/04", "recreated")
	srv.Client().Put(ctx, base+"h/05", "rewritten, same create revision")
	expect(4)
	px.Blackhole()
	srv.Client().Delete(ctx, base+"h/07")
	px.Reset()
	px.Restore()
	expect(7)
	// A hold of a key the watch has not seen yet: created now, watched
	// at once, deleted: it fires once the watch passes its deletion.
	resp, err = srv.Client().Put(ctx, base+"h/late", "x")
	if err != nil {
		t.Fatal(err)
	}
	late := make(chan error, 1)
	stop := gw.WatchGone(base+"h/late", resp.Header.Revision, func(err error) { late <- err })
	defer stop()
	select {
	case err := <-late:
		t.Fatalf("a live key's hold fired: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	srv.Client().Delete(ctx, base+"h/late")
	if err := within(t, late, 5*time.Second); !errors.Is(err, watch.ErrGone) {
		t.Fatalf("late hold: %v", err)
	}
	// A hold registered after its key went, and after the watch's
	// history moved past it.
	for i := range 2100 {
		srv.Client().Put(ctx, base+"noise", fmt.Sprint(i))
	}
	gone := make(chan error, 1)
	stop = gw.WatchGone(fmt.Sprintf("%sh/%02d", base, 3), revs[3], func(err error) { gone <- err })
	defer stop()
	if err := within(t, gone, 5*time.Second); !errors.Is(err, watch.ErrGone) {
		t.Fatalf("hold of a key gone before it was watched: %v", err)
	}
}

// A load reads a range in key order, which is not line order: it sorts
// each line once, not once per key (a line of 10,000 waiters took 10,000
// sorts to load, and every compaction or reconnect reloads).
func TestLoadSortsALineOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := srv.Client()
	base := fmt.Sprintf("watch-test/load-%d/", time.Now().UnixNano())
	const n = 500
	// Created in the reverse of key order.
	for i := n - 1; i >= 0; i-- {
		if _, err := cli.Put(ctx, fmt.Sprintf("%sw/%04d", base, i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	m := watch.For(cli).Mirror(base)
	defer m.Release()
	var rebuilds, length int
	if err := m.Read(ctx, 0, func(v *watch.View) {
		l := v.Line("w")
		rebuilds, length = watch.Rebuilds(l), l.Len()
	}); err != nil {
		t.Fatal(err)
	}
	if length != n || rebuilds != 1 {
		t.Fatalf("loaded a line of %d keys with %d rebuilds, want %d keys and 1", length, rebuilds, n)
	}
}
