package shard_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
	"github.com/coord-go/coord/shard"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A handoff drains: the owner's work is told ErrMoved and takes its time
// to finish (300 ms here); the shard is released only when it returns,
// and only then does the next owner start.
func TestHandoffDrains(t *testing.T) {
	t.Parallel()
	f := newFleet(t, srv.Endpoints(), srv.Client(), 8, 5*time.Second)
	f.hold = 300 * time.Millisecond
	f.start("a", memberOpts{})
	f.waitState(true, 20*time.Second)
	handed := time.Now()
	f.start("b", memberOpts{})
	d := f.waitState(true, 20*time.Second)
	t.Logf("4 of 8 shards handed over, each drained for 300ms, in %v", d.Round(time.Millisecond))
	if c := f.rec.causesSince(handed, "a"); c["moved"] != 4 {
		t.Errorf("a's works ended by %v, want 4 told ErrMoved", c)
	}
	f.rec.mu.Lock()
	for name, is := range f.rec.done {
		for _, i := range is {
			if i.member == "a" && i.end.After(handed) && i.end.Sub(i.start) < 300*time.Millisecond {
				t.Errorf("shard %s: a's work lasted %v, less than its drain", name, i.end.Sub(i.start))
			}
		}
	}
	f.rec.mu.Unlock()
	f.rec.check(t)
}

// A member joining and leaving every 200 ms for 3 s moves shards to it
// and back; once it stops, the map converges, and no two members ever
// worked on one shard at once.
func TestFlappingMemberConverges(t *testing.T) {
	t.Parallel()
	f := newFleet(t, srv.Endpoints(), srv.Client(), 64, 5*time.Second)
	f.startAll(memberOpts{}, "a", "b", "c", "d")
	f.waitState(true, 30*time.Second)
	ctx := ctxT(t, 60*time.Second)
	cli := etcdtest.NewTestClient(t, srv.Endpoints())
	s, err := session.New(ctx, cli, session.WithTTL(5*time.Second), session.WithPrefix(f.root))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before := f.rec.Starts()
	flaps := 0
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); flaps++ {
		m, err := group.Join(ctx, s, f.group, "flapper", nil)
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- shard.New(m, f.name, shard.Count(f.n)).Run(rctx, f.rec.work("flapper", 0)) }()
		time.Sleep(200 * time.Millisecond)
		stop()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("flapper's Run: %v", err)
		}
		if err := m.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopped := time.Now()
	f.waitState(true, 30*time.Second)
	t.Logf("%d flaps moved %d shards; converged %v after the flapping stopped", flaps, f.rec.Starts()-before,
		time.Since(stopped).Round(time.Millisecond))
	f.rec.check(t)
}

// A member that leaves the group while it runs the map hands every shard
// over, drained, and Run says why it ended.
func TestLeaveHandsEverythingOver(t *testing.T) {
	t.Parallel()
	f := newFleet(t, srv.Endpoints(), srv.Client(), 12, 5*time.Second)
	ms := f.startAll(memberOpts{}, "a", "b", "c")
	f.waitState(true, 20*time.Second)
	left := time.Now()
	if err := ms[1].m.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	err, ok := ms[1].wait(10 * time.Second)
	if !ok || !errors.Is(err, group.ErrNotMember) {
		t.Fatalf("Run after Leave returned %v (returned: %v), want group.ErrNotMember", err, ok)
	}
	f.forget("b")
	f.waitState(true, 20*time.Second)
	if c := f.rec.causesSince(left, "b"); c["moved"] != 4 || len(c) != 1 {
		t.Errorf("b's works ended by %v, want 4 handed over (ErrMoved)", c)
	}
	f.rec.check(t)
}

// Owner answers from the process's mirrors with the owner's metadata and
// token; an Observer, with no session, answers the same; Table shows the
// loads and whether anything moves.
func TestOwnerObserverAndTable(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	f := newFleet(t, srv.Endpoints(), srv.Client(), 16, 5*time.Second)
	ms := f.startAll(memberOpts{}, "a", "b")
	f.waitState(true, 20*time.Second)
	ob := shard.NewObserver(srv.Client(), f.name, shard.WithPrefix(f.root))
	tb, err := ob.Table(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !tb.Converged || tb.Group != f.group || len(tb.Shards) != 16 || len(tb.Members) != 2 ||
		tb.Members[0].Owned != 8 || tb.Members[0].Quota != 8 || tb.Members[1].Owned != 8 {
		t.Fatalf("table %+v", tb)
	}
	c := etcdtest.NewCounter()
	ocli := etcdtest.NewTestClient(t, srv.Endpoints(), etcdtest.WithCounter(c))
	ob2 := shard.NewObserver(ocli, f.name, shard.WithPrefix(f.root))
	for _, a := range tb.Shards {
		for _, owner := range []func(context.Context, string) (shard.Owner, error){ms[0].mp.Owner, ob2.Owner} {
			o, err := owner(ctx, a.Shard)
			if err != nil {
				t.Fatal(err)
			}
			if o.Member.ID != a.Owner || o.Token != a.Token || o.Member.Meta["addr"] != a.Owner+":8080" {
				t.Fatalf("Owner(%s) = %+v; the table says %+v", a.Shard, o, a)
			}
		}
	}
	c.Reset()
	for _, a := range tb.Shards {
		if _, err := ob2.Owner(ctx, a.Shard); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Total("Range", "Txn"); n != 0 {
		t.Errorf("16 Owner lookups on a warm Observer cost %d reads (%s), want none", n, c)
	}
	if _, err := ob.Owner(ctx, "16"); !errors.Is(err, shard.ErrUnknownShard) {
		t.Errorf("Owner of a shard the map lacks: %v", err)
	}
	if _, err := shard.NewObserver(srv.Client(), "never-run", shard.WithPrefix(f.root)).Owner(ctx, "0"); !errors.Is(err, shard.ErrUnknownShard) {
		t.Errorf("Owner on a map never run: %v", err)
	}
	// While a shard has no owner, Owner says so.
	f.leave("a")
	f.leave("b")
	if _, err := ob.Owner(ctx, "3"); !errors.Is(err, shard.ErrNoOwner) {
		t.Errorf("Owner with no member running: %v", err)
	}
}

// Work that returns while its shard is still owned is called again, with
// the same ownership, after the restart delay.
func TestWorkReturningEarlyIsCalledAgain(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	r := root(t)
	s, err := session.New(ctx, srv.Client(), session.WithPrefix(r))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := group.Join(ctx, s, "g", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	tokens := []int64{}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- shard.New(m, "restarts", shard.Count(1), shard.WithRestartDelay(50*time.Millisecond)).Run(rctx, func(ctx context.Context, sh *shard.Shard) error {
			mu.Lock()
			defer mu.Unlock()
			tokens = append(tokens, sh.Token())
			if len(tokens) >= 3 {
				stop()
			}
			return errors.New("work failed")
		})
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	// At least 3: a call may start between stop and Run noticing it.
	if len(tokens) < 3 || slices.Min(tokens) != slices.Max(tokens) {
		t.Fatalf("work called with tokens %v, want 3 or more calls on one ownership", tokens)
	}
}

// Members get shards in proportion to their weights.
func TestWeightedShares(t *testing.T) {
	t.Parallel()
	f := newFleet(t, srv.Endpoints(), srv.Client(), 64, 5*time.Second)
	for id, w := range map[string]int64{"one": 1, "two": 2, "five": 5} {
		f.start(id, memberOpts{join: []group.JoinOption{group.WithWeight(w)}})
	}
	ctx := ctxT(t, 30*time.Second)
	ob := shard.NewObserver(srv.Client(), f.name, shard.WithPrefix(f.root))
	want := map[string]int{"one": 8, "two": 16, "five": 40}
	for {
		tb, err := ob.Table(ctx)
		if err == nil && tb.Converged && len(tb.Members) == 3 {
			for _, l := range tb.Members {
				if l.Owned != want[l.ID] || l.Quota != want[l.ID] {
					t.Fatalf("member %s (weight %d) owns %d, quota %d; want %d", l.ID, l.Weight, l.Owned, l.Quota, want[l.ID])
				}
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not converged: %+v, %v", tb, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.rec.check(t)
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	r := root(t)
	s, err := session.New(ctx, srv.Client(), session.WithPrefix(r))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, err := group.Join(ctx, s, "g", "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	work := func(ctx context.Context, sh *shard.Shard) error { <-ctx.Done(); return nil }
	for name, mp := range map[string]*shard.Map{
		"nil membership":  shard.New(nil, "m", shard.Count(4)),
		"empty name":      shard.New(m, "", shard.Count(4)),
		"zero shards":     shard.New(m, "m", shard.Count(0)),
		"negative":        shard.New(m, "m", shard.Count(-3)),
		"too many shards": shard.New(m, "m", shard.Count(shard.MaxShards+1)),
		"no names":        shard.New(m, "m", shard.Named()),
		"a name twice":    shard.New(m, "m", shard.Named("x", "y", "x")),
		"an empty name":   shard.New(m, "m", shard.Named("x", "")),
		"bad utf8 name":   shard.New(m, "m", shard.Named("\xff")),
		"bad concurrency": shard.New(m, "m", shard.Count(4), shard.WithAcquireConcurrency(0)),
		"bad restart":     shard.New(m, "m", shard.Count(4), shard.WithRestartDelay(-time.Second)),
		"bad settle":      shard.New(m, "m", shard.Count(4), shard.WithSettle(-time.Second)),
	} {
		if err := mp.Run(ctx, work); !errors.Is(err, shard.ErrInvalid) {
			t.Errorf("%s: Run: %v, want ErrInvalid", name, err)
		}
		if _, err := mp.Owner(ctx, "0"); !errors.Is(err, shard.ErrInvalid) {
			t.Errorf("%s: Owner: %v, want ErrInvalid", name, err)
		}
	}
	if err := shard.New(m, "m", shard.Count(4)).Run(ctx, nil); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("nil work: %v", err)
	}
	if _, err := shard.NewObserver(nil, "m").Table(ctx); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("Observer with a nil client: %v", err)
	}
	if _, err := shard.NewObserver(srv.Client(), "m", shard.WithPrefix("a/lock/")).Table(ctx); !errors.Is(err, shard.ErrInvalid) {
		t.Errorf("Observer with a bad root: %v", err)
	}

	// One Run at a time; the stored spec must match.
	mp := shard.New(m, "m", shard.Count(4))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mp.Run(rctx, work) }()
	eventually(t, 10*time.Second, "the map stored", func() bool {
		_, err := shard.NewObserver(srv.Client(), "m", shard.WithPrefix(r)).Table(ctx)
		return err == nil
	})
	if err := mp.Run(ctx, work); !errors.Is(err, shard.ErrRunning) {
		t.Errorf("second Run: %v", err)
	}
	s2, err := session.New(ctx, srv.Client(), session.WithPrefix(r))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m2, _ := group.Join(ctx, s2, "g", "b", nil)
	other, _ := group.Join(ctx, s2, "other-group", "b", nil)
	for name, mp := range map[string]*shard.Map{
		"other count":  shard.New(m2, "m", shard.Count(5)),
		"named":        shard.New(m2, "m", shard.Named("0", "1", "2", "3")),
		"other group":  shard.New(other, "m", shard.Count(4)),
		"other member": shard.New(m2, "m", shard.Count(4)),
	} {
		err := mp.Run(ctxT(t, 2*time.Second), work)
		if name == "other member" {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("a matching member's Run: %v", err)
			}
			continue
		}
		if !errors.Is(err, shard.ErrSpecMismatch) {
			t.Errorf("%s: %v, want ErrSpecMismatch", name, err)
		}
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	// A cancelled ctx, a membership left: Run refuses, leaving nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := shard.New(m, "m", shard.Count(4)).Run(cctx, work); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled ctx: %v", err)
	}
	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if err := shard.New(m, "m", shard.Count(4)).Run(ctx, work); !errors.Is(err, group.ErrNotMember) {
		t.Errorf("Run after Leave: %v", err)
	}
	resp, err := srv.Client().Get(ctx, r+"shard/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 1 { // the stored spec
		t.Errorf("%d keys under the map after every Run ended, want only its spec", resp.Count)
	}
}

func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
