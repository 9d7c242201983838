package election_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fnTracker is an fn for Run that records which tokens run, and fails the
// test if two calls ever run with one token.
type fnTracker struct {
	t       *testing.T
	mu      sync.Mutex
	active  map[int64]int
	started chan int64
}

func newTracker(t *testing.T) *fnTracker {
	return &fnTracker{t: t, active: map[int64]int{}, started: make(chan int64, 16)}
}

func (f *fnTracker) fn(ctx context.Context) error {
	tok, ok := election.TokenFrom(ctx)
	if !ok || tok == 0 {
		f.t.Errorf("fn ctx carries no token")
	}
	f.mu.Lock()
	f.active[tok]++
	if f.active[tok] > 1 {
		f.t.Errorf("two fn calls run with token %d", tok)
	}
	f.mu.Unlock()
	f.started <- tok
	<-ctx.Done()
	f.mu.Lock()
	f.active[tok]--
	f.mu.Unlock()
	return ctx.Err()
}

func (f *fnTracker) running(tok int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[tok] > 0
}

func (f *fnTracker) next(t *testing.T) int64 {
	t.Helper()
	select {
	case tok := <-f.started:
		return tok
	case <-time.After(5 * time.Second):
		t.Fatal("no fn started within 5s")
	}
	return 0
}

func TestRunSurvivesLeaderSessionKills(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 40*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	f := newTracker(t)
	results := make(chan error, 3)
	for i := range 3 {
		go func() {
			results <- election.Run(rctx, srv.Client(), "svc", fmt.Sprint("replica-", i), f.fn,
				election.WithPrefix(r), election.WithTTL(5*time.Second))
		}()
	}
	tok := f.next(t)
	for kill := range 2 {
		// Kill the leader's session: revoke the lease of the leader key.
		l := leaderKV(t, r, "svc")
		if l == nil || l.ModRevision != tok {
			t.Fatalf("kill %d: leader key is not token %d: %v", kill, tok, l)
		}
		if _, err := srv.Client().Revoke(ctx, clientLease(l.Lease)); err != nil {
			t.Fatal(err)
		}
		next := f.next(t)
		if next <= tok {
			t.Fatalf("kill %d: new token %d not above %d", kill, next, tok)
		}
		old := tok
		eventually(t, 5*time.Second, "the killed leader's fn returns", func() bool { return !f.running(old) })
		tok = next
	}
	cancel()
	for range 3 {
		select {
		case err := <-results:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return within 5s of ctx ending")
		}
	}
	if f.running(tok) {
		t.Fatal("fn still running after Run returned")
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("%d keys left after Run returned", n)
	}
}

// TestRunHandsOverOnCancel: a leader whose ctx ends resigns, so its
// successor leads in a round trip, not after the 15 s TTL; a follower's
// OnLeader sees both leaders in order.
func TestRunHandsOverOnCancel(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	f := newTracker(t)
	actx, acancel := context.WithCancel(ctx)
	aDone := make(chan error, 1)
	go func() {
		aDone <- election.Run(actx, srv.Client(), "handover", "a", f.fn, election.WithPrefix(r), election.WithTTL(15*time.Second))
	}()
	ta := f.next(t)

	var mu sync.Mutex
	var seen []election.Leader
	bctx, bcancel := context.WithCancel(ctx)
	bDone := make(chan error, 1)
	go func() {
		bDone <- election.Run(bctx, srv.Client(), "handover", "b", f.fn, election.WithPrefix(r),
			election.OnLeader(func(l election.Leader) {
				mu.Lock()
				seen = append(seen, l)
				mu.Unlock()
			}))
	}()
	eventually(t, 5*time.Second, "b queued", func() bool { return countCandidates(t, r) == 2 })
	start := time.Now()
	acancel()
	tb := f.next(t)
	t.Logf("handover took %v", time.Since(start))
	if time.Since(start) > 5*time.Second {
		t.Fatalf("handover took %v: the leader did not resign", time.Since(start))
	}
	if err := <-aDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run a = %v", err)
	}
	eventually(t, 5*time.Second, "OnLeader sees b", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == election.Leader{Value: "b", Token: tb}
	})
	bcancel()
	if err := <-bDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run b = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []election.Leader{{Value: "a", Token: ta}, {Value: "b", Token: tb}}
	if len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Fatalf("OnLeader saw %+v, want %+v", seen, want)
	}
}

func TestRunReturnsFnError(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	boom := errors.New("boom")
	calls := 0
	err := election.Run(ctx, srv.Client(), "fails", "v", func(ctx context.Context) error {
		calls++
		return boom
	}, election.WithPrefix(r))
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Run = %v after %d calls, want boom after 1", err, calls)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// TestRunCancelsCutOffLeaderFirst: a leader cut off from etcd has its
// fn's ctx cancelled before the successor's fn starts.
func TestRunCancelsCutOffLeaderFirst(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	aLeads := make(chan struct{})
	aCtx := make(chan context.Context, 1)
	aDone := make(chan error, 1)
	go func() {
		aDone <- election.Run(rctx, cli, "cutoff", "a", func(ctx context.Context) error {
			select {
			case aCtx <- ctx:
				close(aLeads)
			default: // a later term, after the first was lost
			}
			<-ctx.Done()
			return ctx.Err()
		}, election.WithPrefix(r), election.WithTTL(2*time.Second))
	}()
	select {
	case <-aLeads:
	case <-time.After(5 * time.Second):
		t.Fatal("a did not lead within 5s")
	}
	first := <-aCtx
	bStarted := make(chan bool, 1)
	bDone := make(chan error, 1)
	go func() {
		bDone <- election.Run(rctx, srv.Client(), "cutoff", "b", func(ctx context.Context) error {
			select {
			case bStarted <- first.Err() != nil:
			default:
			}
			<-ctx.Done()
			return ctx.Err()
		}, election.WithPrefix(r), election.WithTTL(2*time.Second))
	}()
	eventually(t, 5*time.Second, "b queued", func() bool { return countCandidates(t, r) == 2 })
	p.Blackhole()
	select {
	case aWasCancelled := <-bStarted:
		if !aWasCancelled {
			t.Fatal("b's fn started while a's fn ctx was still live")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b did not take over within 15s")
	}
	p.Restore()
	cancel()
	for _, ch := range []chan error{aDone, bDone} {
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of ctx ending")
		}
	}
}

func TestRunGivesFnTheFence(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := errors.New("done")
	err := election.Run(ctx, srv.Client(), "fenced", "me", func(ctx context.Context) error {
		tok, ok := election.TokenFrom(ctx)
		cmp, ok2 := election.OwnerFrom(ctx)
		if !ok || !ok2 || tok <= 0 {
			return fmt.Errorf("TokenFrom %d %v, OwnerFrom %v", tok, ok, ok2)
		}
		resp, err := srv.Client().Txn(ctx).If(cmp).Then(clientv3.OpPut(t.Name()+"/result", fmt.Sprint(tok))).Commit()
		if err != nil || !resp.Succeeded {
			return fmt.Errorf("leader's guarded write: %v %v", resp, err)
		}
		return done
	}, election.WithPrefix(t.Name()+"/"))
	if !errors.Is(err, done) {
		t.Fatal(err)
	}
}
