package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var seq atomic.Int64

// root returns a fresh root prefix, so each test sees only its own keys.
func root(t testing.TB) string {
	return fmt.Sprintf("t%d-%s/", seq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
}

func newSession(t testing.TB, cli *clientv3.Client, root string, opts ...session.Option) *session.Session {
	t.Helper()
	s, err := session.New(ctxT(t, 10*time.Second), cli, append([]session.Option{session.WithPrefix(root)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// candidates returns the candidate keys under root, oldest first (not
// the leader key, nor the rule).
func candidates(t testing.TB, root string) []*mvccpb.KeyValue {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), root+"election/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	var out []*mvccpb.KeyValue
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key), "/c/") {
			out = append(out, kv)
		}
	}
	return out
}

// leaderKV returns the leader key of the election name under root, or nil.
func leaderKV(t testing.TB, root, name string) *mvccpb.KeyValue {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), root+"election/"+name+"/leader")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func countCandidates(t testing.TB, root string) int {
	return len(candidates(t, root))
}

// eventually waits up to d for cond.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// campaignAsync starts a Campaign and returns its result channel.
func campaignAsync(ctx context.Context, e *election.Election, v string) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- e.Campaign(ctx, v) }()
	return ch
}

func TestUncontendedCampaignIsOneTxn(t *testing.T) {
	t.Parallel()
	r := root(t)
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s := newSession(t, cli, r)
	e := election.New(s, "api")
	ctx := ctxT(t, 10*time.Second)
	c.Reset()
	if err := e.Campaign(ctx, "host-a"); err != nil {
		t.Fatal(err)
	}
	if n := c.Get("Txn"); n != 1 {
		t.Errorf("uncontended campaign: %d Txns, want 1 (%v)", n, c)
	}
	if n := c.Total("Range", "Put", "DeleteRange"); n != 0 {
		t.Errorf("uncontended campaign made other KV calls: %v", c)
	}
	l, err := e.Leader(ctx)
	if err != nil || l.Value != "host-a" || l.Token != e.Token() || l.Token == 0 {
		t.Fatalf("Leader = %+v, %v; token %d", l, err, e.Token())
	}
	if isClosed(e.Done()) {
		t.Fatal("Done closed while leading")
	}
	c.Reset()
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.Total("Txn", "DeleteRange"); n != 1 {
		t.Errorf("resign: %d writes, want 1 (%v)", n, c)
	}
	if !isClosed(e.Done()) {
		t.Fatal("Done open after Resign")
	}
	if _, err := e.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Leader after resign: %v", err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatalf("second Resign: %v", err)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestCandidatesLeadInCampaignOrder(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	const n = 4
	es := make([]*election.Election, n)
	errs := make([]<-chan error, n)
	for i := range es {
		es[i] = election.New(newSession(t, srv.Client(), r), "order")
		errs[i] = campaignAsync(ctx, es[i], fmt.Sprint("c", i))
		// Queue them one by one so the order is known.
		eventually(t, 5*time.Second, "candidate queued", func() bool { return countCandidates(t, r) == i+1 })
	}
	var last int64
	for i := range es {
		select {
		case err := <-errs[i]:
			if err != nil {
				t.Fatalf("candidate %d: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("candidate %d not elected within 5s", i)
		}
		for j := i + 1; j < n; j++ {
			select {
			case err := <-errs[j]:
				t.Fatalf("candidate %d elected (%v) while %d leads", j, err, i)
			default:
			}
		}
		l, err := es[i].Leader(ctx)
		if err != nil || l.Value != fmt.Sprint("c", i) || l.Token != es[i].Token() {
			t.Fatalf("Leader = %+v, %v", l, err)
		}
		if es[i].Token() <= last {
			t.Fatalf("token %d not above the previous %d", es[i].Token(), last)
		}
		last = es[i].Token()
		if err := es[i].Resign(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNoPhantomLeadership is the bug etcd's Election has: a waiter whose
// lease is revoked still "wins" when the leader resigns.
func TestNoPhantomLeadership(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	leader := election.New(newSession(t, srv.Client(), r), "phantom")
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ws := newSession(t, srv.Client(), r)
	waiter := election.New(ws, "phantom")
	res := campaignAsync(ctx, waiter, "b")
	eventually(t, 5*time.Second, "waiter queued", func() bool { return countCandidates(t, r) == 2 })
	if _, err := srv.Client().Revoke(ctx, ws.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Campaign won with a revoked lease")
		}
		if !errors.Is(err, session.ErrExpired) && !errors.Is(err, election.ErrKeyDeleted) {
			t.Fatalf("Campaign error %v does not say the session or key is gone", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Campaign did not return within 5s of losing its lease")
	}
	if !isClosed(waiter.Done()) || waiter.Token() != 0 {
		t.Fatal("failed candidate reports leadership")
	}
	if _, err := waiter.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Leader: %v", err)
	}
}

func TestCampaignFailsWhenKeyDeleted(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	leader := election.New(newSession(t, srv.Client(), r), "deleted")
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ws := newSession(t, srv.Client(), r)
	res := campaignAsync(ctx, election.New(ws, "deleted"), "b")
	eventually(t, 5*time.Second, "waiter queued", func() bool { return countCandidates(t, r) == 2 })
	if _, err := srv.Client().Delete(ctx, string(candidates(t, r)[1].Key)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, election.ErrKeyDeleted) {
			t.Fatalf("Campaign = %v, want ErrKeyDeleted", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Campaign still waiting 5s after its key was deleted")
	}
	if ws.Err() != nil {
		t.Fatalf("session ended: %v", ws.Err())
	}
}

func TestCancelledCampaignLeavesNoKey(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	leader := election.New(newSession(t, srv.Client(), r), "cancel")
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	waiter := election.New(newSession(t, srv.Client(), r), "cancel")
	res := campaignAsync(wctx, waiter, "b")
	eventually(t, 5*time.Second, "waiter queued", func() bool { return countCandidates(t, r) == 2 })
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Campaign = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Campaign did not return within 5s of cancel")
	}
	// The key is gone when Campaign returns, not a TTL later.
	if n := countCandidates(t, r); n != 1 {
		t.Fatalf("%d candidate keys after the cancel, want 1", n)
	}
	// And a cancelled campaign can be retried on the same Election.
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := waiter.Campaign(ctx, "b"); err != nil {
		t.Fatal(err)
	}
}

func TestProclaimAndFencing(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	s := newSession(t, srv.Client(), r)
	e := election.New(s, "proclaim")
	if err := e.Proclaim(ctx, "x"); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Proclaim before Campaign: %v", err)
	}
	if err := e.Campaign(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Proclaim(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	// Campaign on a leader proclaims.
	if err := e.Campaign(ctx, "v3"); err != nil {
		t.Fatal(err)
	}
	l, err := e.Leader(ctx)
	if err != nil || l.Value != "v3" || l.Token != e.Token() {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	guarded := func() bool {
		resp, err := srv.Client().Txn(ctx).If(e.IsOwner()).Then(clientv3.OpPut(r+"data", "x")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !guarded() {
		t.Fatal("IsOwner failed while leading")
	}
	// Someone deletes the key: leadership is lost, and everything says so.
	if _, err := srv.Client().Delete(ctx, string(candidates(t, r)[0].Key)); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(e.Done(), 5*time.Second) {
		t.Fatal("Done open 5s after the key was deleted")
	}
	if guarded() {
		t.Fatal("IsOwner held after the key was deleted")
	}
	if err := e.Proclaim(ctx, "v4"); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Proclaim after loss: %v", err)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("Proclaim recreated the key: %d keys", n)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if guarded() || e.Token() != 0 {
		t.Fatal("IsOwner or Token after Resign")
	}
}

func TestDoneFiresOnSessionClose(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	s := newSession(t, srv.Client(), r)
	e := election.New(s, "close")
	if err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !closedWithin(e.Done(), 5*time.Second) {
		t.Fatal("Done open after the session closed")
	}
	if err := e.Campaign(ctx, "a"); !errors.Is(err, session.ErrClosed) {
		t.Fatalf("Campaign on a closed session: %v", err)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// TestFailedResignKeepsLeadership: etcd's Resign forgets the leadership
// even when its request failed (etcd #22123).
func TestFailedResignKeepsLeadership(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	e := election.New(newSession(t, cli, r, session.WithTTL(20*time.Second)), "resign")
	if err := e.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	token := e.Token()
	p.Blackhole()
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = e.Resign(rctx)
	cancel()
	if err == nil {
		t.Fatal("Resign through a blackhole succeeded")
	}
	if e.Token() != token || isClosed(e.Done()) {
		t.Fatal("a failed Resign gave up the leadership locally")
	}
	p.Restore()
	if err := e.Resign(ctx); err != nil {
		t.Fatalf("retried Resign: %v", err)
	}
	if !isClosed(e.Done()) || e.Token() != 0 {
		t.Fatal("still leader after Resign")
	}
	eventually(t, 5*time.Second, "key deleted", func() bool { return countCandidates(t, r) == 0 })
}

func TestConcurrentCampaignOnOneElection(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	leader := election.New(newSession(t, srv.Client(), r), "busy")
	if err := leader.Campaign(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	e := election.New(newSession(t, srv.Client(), r), "busy")
	res := campaignAsync(ctx, e, "b")
	eventually(t, 5*time.Second, "queued", func() bool { return countCandidates(t, r) == 2 })
	if err := e.Campaign(ctx, "b"); !errors.Is(err, election.ErrCampaigning) {
		t.Fatalf("second Campaign: %v", err)
	}
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-res; err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 20*time.Second)
	s := newSession(t, srv.Client(), r)
	for _, name := range []string{"", strings.Repeat("x", 513), "bad\xffutf8"} {
		e := election.New(s, name)
		if err := e.Campaign(ctx, "v"); !errors.Is(err, election.ErrInvalid) {
			t.Errorf("name %.10q: Campaign = %v", name, err)
		}
		if err := e.Proclaim(ctx, "v"); !errors.Is(err, election.ErrInvalid) {
			t.Errorf("name %.10q: Proclaim = %v", name, err)
		}
		if err := e.Resign(ctx); !errors.Is(err, election.ErrInvalid) {
			t.Errorf("name %.10q: Resign = %v", name, err)
		}
		if _, err := e.Leader(ctx); !errors.Is(err, election.ErrInvalid) {
			t.Errorf("name %.10q: Leader = %v", name, err)
		}
		if _, ok := <-e.Observe(ctx); ok {
			t.Errorf("name %.10q: Observe sent something", name)
		}
		if !isClosed(e.Done()) || e.Token() != 0 {
			t.Errorf("name %.10q: leadership without a campaign", name)
		}
		if err := election.Run(ctx, srv.Client(), name, "v", func(context.Context) error { return nil }); !errors.Is(err, election.ErrInvalid) {
			t.Errorf("name %.10q: Run = %v", name, err)
		}
	}
	nilS := election.New(nil, "x")
	if err := nilS.Campaign(ctx, "v"); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("nil session: %v", err)
	}
	if _, err := nilS.Leader(ctx); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("nil session Leader: %v", err)
	}
	nilS.IsOwner() // must not panic
	fn := func(context.Context) error { return nil }
	if err := election.Run(ctx, nil, "x", "v", fn); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("Run with nil client: %v", err)
	}
	if err := election.Run(ctx, srv.Client(), "x", "v", nil); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("Run with nil fn: %v", err)
	}
	if err := election.Run(ctx, srv.Client(), "x", "v", fn, election.WithTTL(time.Millisecond)); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("Run with a 1ms TTL: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := election.New(s, "x").Campaign(cctx, "v"); !errors.Is(err, context.Canceled) {
		t.Errorf("Campaign with a cancelled ctx: %v", err)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("bad input left %d keys", n)
	}
}

func clientLease(id int64) clientv3.LeaseID { return clientv3.LeaseID(id) }
