package semaphore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// root is a root prefix of the test's own, so that "no stray keys" can be
// checked by counting everything under it.
func root(t *testing.T) string {
	r, _ := roots.LoadOrStore(t, fmt.Sprintf("t/%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), runs.Add(1)))
	return r.(string)
}

var (
	roots sync.Map // *testing.T -> its root, fresh for every run of -count
	runs  atomic.Int64
)

// newSession starts a session under the test's root on cli (the shared
// client when nil), closed at the end of the test.
func newSession(t *testing.T, cli *clientv3.Client) *session.Session {
	t.Helper()
	if cli == nil {
		cli = srv.Client()
	}
	s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithPrefix(root(t)), session.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// lineKeys counts the request keys of every semaphore under the test's root.
func lineKeys(t *testing.T) int64 {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), root(t)+"semaphore/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, kv := range resp.Kvs {
		if !strings.HasSuffix(string(kv.Key), "/capacity") {
			n++
		}
	}
	return n
}

type result struct {
	p   *semaphore.Permit
	err error
}

func acquireAsync(ctx context.Context, sem *semaphore.Semaphore, n int64) <-chan result {
	c := make(chan result, 1)
	go func() {
		p, err := sem.Acquire(ctx, n)
		c <- result{p, err}
	}()
	return c
}

func within(t *testing.T, c <-chan result, d time.Duration) result {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(d):
		t.Fatalf("no result within %v", d)
		return result{}
	}
}

func notDone(t *testing.T, c <-chan result) {
	t.Helper()
	select {
	case r := <-c:
		t.Fatalf("granted out of turn: %v", r.err)
	default:
	}
}

// waitFor polls a condition that is observable only by reading etcd, with
// a deadline; it is an observation, not a sleep standing in for one.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waiting(t *testing.T, sem *semaphore.Semaphore, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d waiters", n), func() bool {
		st, err := sem.State(context.Background())
		return err == nil && len(st.Waiting) == n
	})
}

func mustAcquire(t *testing.T, sem *semaphore.Semaphore, n int64) *semaphore.Permit {
	t.Helper()
	p, err := sem.Acquire(ctxT(t, 10*time.Second), n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustRelease(t *testing.T, p *semaphore.Permit) {
	t.Helper()
	if err := p.Release(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestNeverExceedsCapacity runs 16 sessions against a semaphore of 4: the
// permits held at once, counted in process, never exceed 4 and do reach
// it, and every token is new.
func TestNeverExceedsCapacity(t *testing.T) {
	t.Parallel()
	const capacity, workers, rounds = 4, 16, 5
	ctx := ctxT(t, 60*time.Second)
	var cur, peak atomic.Int64
	full := make(chan struct{})
	var fullOnce sync.Once
	var tokens sync.Map
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		sem := semaphore.New(newSession(t, nil), "pool", capacity)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				p, err := sem.Acquire(ctx, 1)
				if err != nil {
					errs <- err
					return
				}
				if _, dup := tokens.LoadOrStore(p.Token(), i); dup {
					errs <- fmt.Errorf("token %d granted twice", p.Token())
				}
				c := cur.Add(1)
				for old := peak.Load(); c > old && !peak.CompareAndSwap(old, c); old = peak.Load() {
				}
				if c == capacity {
					fullOnce.Do(func() { close(full) })
				}
				// Hold until the semaphore has been full once, so that
				// "reaches the capacity" does not depend on timing.
				select {
				case <-full:
				case <-time.After(5 * time.Second):
				}
				cur.Add(-1)
				if err := p.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := peak.Load(); got != capacity {
		t.Fatalf("peak permits held = %d, want exactly %d", got, capacity)
	}
	if n := lineKeys(t); n != 0 {
		t.Fatalf("%d keys left behind", n)
	}
}

// TestWeightedNeverExceedsCapacity mixes weights 1..3 under capacity 5,
// with goroutines sharing Semaphores (and so their watch).
func TestWeightedNeverExceedsCapacity(t *testing.T) {
	t.Parallel()
	const capacity, workers, rounds = 5, 8, 6
	ctx := ctxT(t, 60*time.Second)
	var cur, peak atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	// Two processes, each with one Semaphore its goroutines share.
	sems := []*semaphore.Semaphore{
		semaphore.New(newSession(t, nil), "weighted", capacity),
		semaphore.New(newSession(t, nil), "weighted", capacity),
	}
	for i := range workers {
		sem := sems[i%2]
		w := int64(1 + i%3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				p, err := sem.Acquire(ctx, w)
				if err != nil {
					errs <- err
					return
				}
				c := cur.Add(w)
				for old := peak.Load(); c > old && !peak.CompareAndSwap(old, c); old = peak.Load() {
				}
				cur.Add(-w)
				if err := p.Release(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := peak.Load(); got > capacity {
		t.Fatalf("peak weight held = %d, over capacity %d", got, capacity)
	}
}

// TestFIFO is x/sync's rule: with 3 of 4 held, a request for 4 waits, and
// a later request for 1 must not jump ahead of it although 1 is free.
func TestFIFO(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	a := semaphore.New(newSession(t, nil), "gpu", 4)
	b := semaphore.New(newSession(t, nil), "gpu", 4)
	c := semaphore.New(newSession(t, nil), "gpu", 4)
	held := mustAcquire(t, a, 3)
	big := acquireAsync(ctx, b, 4)
	waiting(t, a, 1)
	small := acquireAsync(ctx, c, 1)
	waiting(t, a, 2)
	if _, err := c.TryAcquire(ctx, 1); !errors.Is(err, semaphore.ErrNoPermits) {
		t.Fatalf("TryAcquire(1) jumped the line: %v", err)
	}
	notDone(t, big)
	notDone(t, small)
	if n, err := a.Available(ctx); err != nil || n != 1 {
		t.Fatalf("Available = %d, %v; want 1", n, err)
	}
	mustRelease(t, held)
	rb := within(t, big, 5*time.Second)
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	if rb.p.Token() <= held.Token() {
		t.Fatalf("token %d not above the previous holder's %d", rb.p.Token(), held.Token())
	}
	waiting(t, a, 1) // the small request, still behind the big one
	notDone(t, small)
	mustRelease(t, rb.p)
	rs := within(t, small, 5*time.Second)
	if rs.err != nil {
		t.Fatal(rs.err)
	}
	mustRelease(t, rs.p)
}

func TestRevokedSessionFreesPermits(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	s1 := newSession(t, nil)
	holder := semaphore.New(s1, "db", 2)
	waiter := semaphore.New(newSession(t, nil), "db", 2)
	p := mustAcquire(t, holder, 2)
	done := p.Done()
	w := acquireAsync(ctx, waiter, 2)
	waiting(t, waiter, 1)
	if _, err := srv.Client().Revoke(ctx, s1.Lease()); err != nil {
		t.Fatal(err)
	}
	r := within(t, w, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close after the session's lease was revoked")
	}
	if err := p.Release(ctx); !errors.Is(err, semaphore.ErrLost) || !errors.Is(err, session.ErrExpired) {
		t.Fatalf("Release of a lost permit = %v, want ErrLost wrapping session.ErrExpired", err)
	}
	mustRelease(t, r.p)
}

func TestClosedSessionFreesPermitsAndIsRejected(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	s1 := newSession(t, nil)
	holder := semaphore.New(s1, "db", 1)
	waiter := semaphore.New(newSession(t, nil), "db", 1)
	mustAcquire(t, holder, 1)
	w := acquireAsync(ctx, waiter, 1)
	waiting(t, waiter, 1)
	s1.Close()
	r := within(t, w, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := holder.Acquire(ctx, 1); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("Acquire on a closed session = %v, want session.ErrClosed", err)
	}
	mustRelease(t, r.p)
}

func TestSessionLostWhileWaiting(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	a := semaphore.New(newSession(t, nil), "x", 1)
	s2 := newSession(t, nil)
	b := semaphore.New(s2, "x", 1)
	p := mustAcquire(t, a, 1)
	w := acquireAsync(ctx, b, 1)
	waiting(t, a, 1)
	srv.Client().Revoke(ctx, s2.Lease())
	if r := within(t, w, 5*time.Second); !errors.Is(r.err, session.ErrExpired) {
		t.Fatalf("waiter on a revoked session = %v, want session.ErrExpired", r.err)
	}
	mustRelease(t, p)
	if n := lineKeys(t); n != 0 {
		t.Fatalf("%d keys left behind", n)
	}
}

func TestCapacityMismatch(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	s := newSession(t, nil)
	p := mustAcquire(t, semaphore.New(s, "m", 4), 1)
	other := semaphore.New(newSession(t, nil), "m", 5)
	if _, err := other.Acquire(ctx, 1); !errors.Is(err, semaphore.ErrCapacityMismatch) {
		t.Fatalf("Acquire with capacity 5 = %v, want ErrCapacityMismatch", err)
	}
	if _, err := other.TryAcquire(ctx, 1); !errors.Is(err, semaphore.ErrCapacityMismatch) {
		t.Fatalf("TryAcquire with capacity 5 = %v, want ErrCapacityMismatch", err)
	}
	if _, err := other.Available(ctx); !errors.Is(err, semaphore.ErrCapacityMismatch) {
		t.Fatalf("Available with capacity 5 = %v, want ErrCapacityMismatch", err)
	}
	if n := lineKeys(t); n != 1 {
		t.Fatalf("%d request keys, want only the holder's", n)
	}
	mustRelease(t, p)
	// A different name is a different semaphore.
	mustRelease(t, mustAcquire(t, semaphore.New(s, "m/2", 5), 5))
}

func TestSetCapacityUp(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	a := semaphore.New(newSession(t, nil), "up", 2)
	held := mustAcquire(t, a, 2)
	w1 := acquireAsync(ctx, semaphore.New(newSession(t, nil), "up", 2), 1)
	waiting(t, a, 1)
	w2 := acquireAsync(ctx, semaphore.New(newSession(t, nil), "up", 2), 2)
	waiting(t, a, 2)
	if err := a.SetCapacity(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, w := range []<-chan result{w1, w2} {
		if r := within(t, w, 5*time.Second); r.err != nil {
			t.Fatal(r.err)
		} else {
			defer mustRelease(t, r.p)
		}
	}
	// A user made with the old capacity follows the new one.
	late := semaphore.New(newSession(t, nil), "up", 2)
	if n, err := late.Available(ctx); err != nil || n != 0 {
		t.Fatalf("Available after SetCapacity(5) with 5 held = %d, %v; want 0", n, err)
	}
	mustRelease(t, held)
	if p, err := late.TryAcquire(ctx, 2); err != nil {
		t.Fatalf("TryAcquire(2) of 5 with 3 held: %v", err)
	} else {
		mustRelease(t, p)
	}
}

func TestSetCapacityDown(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	a := semaphore.New(newSession(t, nil), "down", 4)
	held := mustAcquire(t, a, 3)
	hdone := held.Done()
	big := acquireAsync(ctx, semaphore.New(newSession(t, nil), "down", 4), 4)
	waiting(t, a, 1)
	small := acquireAsync(ctx, semaphore.New(newSession(t, nil), "down", 4), 1)
	waiting(t, a, 2)
	if err := a.SetCapacity(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if r := within(t, big, 5*time.Second); !errors.Is(r.err, semaphore.ErrTooLarge) {
		t.Fatalf("waiting request for 4 after SetCapacity(2) = %v, want ErrTooLarge", r.err)
	}
	// The holder keeps its 3 permits; the request for 1 still waits.
	waiting(t, a, 1)
	notDone(t, small)
	select {
	case <-hdone:
		t.Fatal("holder lost its permit on SetCapacity")
	default:
	}
	if n, err := a.Available(ctx); err != nil || n != 0 {
		t.Fatalf("Available with 3 held of 2 = %d, %v; want 0", n, err)
	}
	if _, err := a.Acquire(ctx, 3); !errors.Is(err, semaphore.ErrTooLarge) {
		t.Fatalf("Acquire(3) of 2 = %v, want ErrTooLarge", err)
	}
	mustRelease(t, held)
	r := within(t, small, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.p)
	if n := lineKeys(t); n != 0 {
		t.Fatalf("%d keys left behind", n)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	s := newSession(t, nil)
	closedS := newSession(t, nil)
	closedS.Close()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	good := semaphore.New(s, "good", 2)
	cases := []struct {
		name string
		sem  *semaphore.Semaphore
		ctx  context.Context
		n    int64
		want error
	}{
		{"empty name", semaphore.New(s, "", 2), ctx, 1, semaphore.ErrInvalid},
		{"long name", semaphore.New(s, strings.Repeat("n", 513), 2), ctx, 1, semaphore.ErrInvalid},
		{"bad utf8", semaphore.New(s, "bad\xff", 2), ctx, 1, semaphore.ErrInvalid},
		{"capacity 0", semaphore.New(s, "c0", 0), ctx, 1, semaphore.ErrInvalid},
		{"capacity -1", semaphore.New(s, "c-1", -1), ctx, 1, semaphore.ErrInvalid},
		{"n 0", good, ctx, 0, semaphore.ErrInvalid},
		{"n -3", good, ctx, -3, semaphore.ErrInvalid},
		{"n > capacity", good, ctx, 3, semaphore.ErrTooLarge},
		{"nil session", semaphore.New(nil, "x", 2), ctx, 1, semaphore.ErrInvalid},
		{"closed session", semaphore.New(closedS, "x", 2), ctx, 1, session.ErrClosed},
		{"cancelled ctx", good, cancelled, 1, context.Canceled},
	}
	for _, c := range cases {
		if _, err := c.sem.Acquire(c.ctx, c.n); !errors.Is(err, c.want) {
			t.Errorf("%s: Acquire = %v, want %v", c.name, err, c.want)
		}
		if _, err := c.sem.TryAcquire(c.ctx, c.n); !errors.Is(err, c.want) {
			t.Errorf("%s: TryAcquire = %v, want %v", c.name, err, c.want)
		}
		if c.n == 1 && c.want != semaphore.ErrTooLarge {
			if _, err := c.sem.Available(c.ctx); !errors.Is(err, c.want) {
				t.Errorf("%s: Available = %v, want %v", c.name, err, c.want)
			}
			if err := c.sem.SetCapacity(c.ctx, 2); !errors.Is(err, c.want) {
				t.Errorf("%s: SetCapacity = %v, want %v", c.name, err, c.want)
			}
		}
	}
	for _, n := range []int64{0, -1} {
		if err := good.SetCapacity(ctx, n); !errors.Is(err, semaphore.ErrInvalid) {
			t.Errorf("SetCapacity(%d) = %v, want ErrInvalid", n, err)
		}
	}
	if err := (semaphore.New(s, "", 1)).SetCapacity(ctx, 1); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("error for an empty name does not say so: %v", err)
	}
	resp, err := srv.Client().Get(ctx, root(t)+"semaphore/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("bad input left %d keys (%v)", resp.Count, err)
	}
}

func TestCancelledWaiterLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	a := semaphore.New(newSession(t, nil), "c", 1)
	p := mustAcquire(t, a, 1)
	wctx, cancel := context.WithCancel(ctx)
	w := acquireAsync(wctx, semaphore.New(newSession(t, nil), "c", 1), 1)
	waiting(t, a, 1)
	cancel()
	if r := within(t, w, 5*time.Second); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Acquire = %v, want context.Canceled", r.err)
	}
	if st, err := a.State(ctx); err != nil || len(st.Waiting) != 0 || len(st.Holders) != 1 {
		t.Fatalf("after cancel: %+v, %v; want one holder, no waiter", st, err)
	}
	mustRelease(t, p)
	if err := p.Release(ctx); !errors.Is(err, semaphore.ErrNotHeld) {
		t.Fatalf("second Release = %v, want ErrNotHeld", err)
	}
}

func TestDoneAndHolders(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	s := newSession(t, nil)
	sem := semaphore.New(s, "h", 5)
	p1 := mustAcquire(t, sem, 2)
	p2 := mustAcquire(t, sem, 1)
	w := acquireAsync(ctx, semaphore.New(newSession(t, nil), "h", 5), 4)
	waiting(t, sem, 1)
	hs, err := sem.Holders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 || hs[0].Token != p1.Token() || hs[0].Weight != 2 || hs[1].Token != p2.Token() ||
		hs[1].Weight != 1 || hs[0].Lease != s.Lease() || hs[0].Key != p1.Key() {
		t.Fatalf("Holders = %+v, want p1 (2, %d) then p2 (1, %d)", hs, p1.Token(), p2.Token())
	}
	if n, err := sem.Available(ctx); err != nil || n != 2 {
		t.Fatalf("Available = %d, %v; want 2", n, err)
	}
	// Someone deletes p1's key: Done closes, Release reports the loss,
	// and the waiter gets in (2 + 4 <= 5 is false; 1 + 4 <= 5 is true).
	d1 := p1.Done()
	if _, err := srv.Client().Delete(ctx, p1.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d1:
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close when the permit's key was deleted")
	}
	if err := p1.Err(); !errors.Is(err, semaphore.ErrLost) {
		t.Fatalf("Err after deletion = %v, want ErrLost", err)
	}
	if err := p1.Release(ctx); !errors.Is(err, semaphore.ErrLost) {
		t.Fatalf("Release after deletion = %v, want ErrLost", err)
	}
	r := within(t, w, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Release closes Done too.
	d2 := p2.Done()
	mustRelease(t, p2)
	select {
	case <-d2:
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close on Release")
	}
	mustRelease(t, r.p)
	// IsOwner guards a Txn while held and fails after.
	p3 := mustAcquire(t, sem, 1)
	if resp, err := srv.Client().Txn(ctx).If(p3.IsOwner()).Commit(); err != nil || !resp.Succeeded {
		t.Fatalf("IsOwner while held: %v, %v", resp, err)
	}
	mustRelease(t, p3)
	if resp, err := srv.Client().Txn(ctx).If(p3.IsOwner()).Commit(); err != nil || resp.Succeeded {
		t.Fatalf("IsOwner after release held: %v", err)
	}
}

// TestCost pins the cost model: acquiring free permits is one Txn and
// releasing one Delete; a waiter does no RPC at all for releases that do
// not let it proceed, nor for requests queueing behind it.
func TestCost(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	counter := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(counter))
	if err != nil {
		t.Fatal(err)
	}
	mine := semaphore.New(newSession(t, cli), "cost", 4)
	// The session opens a watch of its own in the background.
	waitFor(t, "the session's watch", func() bool { return counter.Get("Watch.Create") == 1 })
	kv := func() string {
		return fmt.Sprintf("Txn=%d Range=%d Put=%d DeleteRange=%d Watch.Create=%d", counter.Get("Txn"),
			counter.Get("Range"), counter.Get("Put"), counter.Get("DeleteRange"), counter.Get("Watch.Create"))
	}
	// The very first Acquire of a name stores its capacity: a second Txn,
	// since doing it in one would take a nested Txn (which some etcd
	// versions do not check permissions on). Every later one is one Txn.
	counter.Reset()
	p, err := mine.Acquire(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kv(), "Txn=2 Range=0 Put=0 DeleteRange=0 Watch.Create=0"; got != want {
		t.Fatalf("first Acquire of a new name made %s, want %s", got, want)
	}
	mustRelease(t, p)
	counter.Reset()
	p, err = mine.Acquire(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kv(), "Txn=1 Range=0 Put=0 DeleteRange=0 Watch.Create=0"; got != want {
		t.Fatalf("uncontended Acquire made %s, want %s", got, want)
	}
	counter.Reset()
	mustRelease(t, p)
	if got, want := kv(), "Txn=0 Range=0 Put=0 DeleteRange=1 Watch.Create=0"; got != want {
		t.Fatalf("Release made %s, want %s", got, want)
	}

	other := semaphore.New(newSession(t, nil), "cost", 4)
	var held []*semaphore.Permit
	for range 4 {
		held = append(held, mustAcquire(t, other, 1))
	}
	counter.Reset()
	w := acquireAsync(ctx, mine, 4)
	waiting(t, other, 1)
	// Requests behind the waiter and releases that free too little.
	behind := acquireAsync(ctx, semaphore.New(newSession(t, nil), "cost", 4), 1)
	waiting(t, other, 2)
	for _, h := range held[:3] {
		mustRelease(t, h)
	}
	waiting(t, other, 2)
	notDone(t, w)
	mustRelease(t, held[3])
	r := within(t, w, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Enqueue Txn, one watch, at most one re-read when the watch starts.
	if n := counter.Total("Txn", "Range"); n > 2 {
		t.Fatalf("waiter made %d reads and Txns (%s), want at most 2", n, counter)
	}
	if n := counter.Get("Watch.Create"); n != 1 {
		t.Fatalf("waiter opened %d watches, want 1", n)
	}
	mustRelease(t, r.p)
	if r := within(t, behind, 5*time.Second); r.err != nil {
		t.Fatal(r.err)
	} else {
		mustRelease(t, r.p)
	}

	// The Semaphore's watch outlives the wait, so the next contended
	// Acquire costs its Txn and nothing else: no watch, no read.
	h := mustAcquire(t, other, 4)
	counter.Reset()
	w = acquireAsync(ctx, mine, 1)
	waiting(t, other, 1)
	mustRelease(t, h)
	if r = within(t, w, 5*time.Second); r.err != nil {
		t.Fatal(r.err)
	}
	if got, want := kv(), "Txn=1 Range=0 Put=0 DeleteRange=0 Watch.Create=0"; got != want {
		t.Fatalf("contended Acquire with the watch open made %s, want %s", got, want)
	}
	mustRelease(t, r.p)
}

// TestReleaseUnblocksSeveral: one release may let several waiters in.
func TestReleaseUnblocksSeveral(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	a := semaphore.New(newSession(t, nil), "fan", 3)
	p := mustAcquire(t, a, 3)
	var ws []<-chan result
	for i := range 3 {
		ws = append(ws, acquireAsync(ctx, semaphore.New(newSession(t, nil), "fan", 3), 1))
		waiting(t, a, i+1)
	}
	mustRelease(t, p)
	for _, w := range ws {
		r := within(t, w, 5*time.Second)
		if r.err != nil {
			t.Fatal(r.err)
		}
		defer mustRelease(t, r.p)
	}
}

// TestWaiterSurvivesMemberKill kills the one member a waiter talks to,
// releases the permit it waits for and compacts while it is down: the
// waiter must be granted once the member is back, not hang or miss the
// release.
func TestWaiterSurvivesMemberKill(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	ctx := ctxT(t, 60*time.Second)
	other, err := c.NewClient([]string{c.Endpoint(1), c.Endpoint(2)})
	if err != nil {
		t.Fatal(err)
	}
	only0, err := c.NewClient([]string{c.Endpoint(0)})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := session.New(ctx, other, session.WithTTL(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	ws, err := session.New(ctx, only0, session.WithTTL(15*time.Second), session.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	holder := semaphore.New(hs, "failover", 2)
	p := mustAcquire(t, holder, 2)
	w := acquireAsync(ctx, semaphore.New(ws, "failover", 2), 1)
	waiting(t, holder, 1)
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
	c.Kill(0)
	retry(p.Release)
	retry(func(ctx context.Context) error { _, err := other.Put(ctx, "noise", "x"); return err })
	retry(c.Compact)
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	r := within(t, w, 15*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	retry(r.p.Release)
}

// testLogger sends a session's debug logs to the test log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
