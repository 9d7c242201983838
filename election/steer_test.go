package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
)

// overlap is a Run fn that fails the test if two replicas' fn ever run at
// once, and records the tokens of the terms in the order they started.
type overlap struct {
	t       *testing.T
	running atomic.Int32
	mu      sync.Mutex
	tokens  []int64
	values  []string
	started chan string
}

func newOverlap(t *testing.T) *overlap { return &overlap{t: t, started: make(chan string, 64)} }

func (o *overlap) fn(value string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if n := o.running.Add(1); n > 1 {
			o.t.Errorf("%d leaders' work ran at once (%s started while another ran)", n, value)
		}
		tok, _ := election.TokenFrom(ctx)
		o.mu.Lock()
		if k := len(o.tokens); k > 0 && tok <= o.tokens[k-1] {
			o.t.Errorf("token %d of %s not above the previous term's %d", tok, value, o.tokens[k-1])
		}
		o.tokens = append(o.tokens, tok)
		o.values = append(o.values, value)
		o.mu.Unlock()
		o.started <- value
		<-ctx.Done()
		// A little work after the cancel, as real work winds down: a
		// successor starting now would overlap.
		time.Sleep(20 * time.Millisecond)
		o.running.Add(-1)
		return nil
	}
}

func (o *overlap) next(t *testing.T) string {
	t.Helper()
	select {
	case v := <-o.started:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no leader started within 10s")
	}
	return ""
}

// Under the priority rule the highest priority leads next, equals in
// campaign order, whatever order they campaigned in; without preemption
// the incumbent keeps leading until it resigns.
func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	rule := election.WithRule(election.Rule{Priority: true})
	incumbent := election.New(newSession(t, srv.Client(), r), "prio", rule)
	if err := incumbent.Campaign(ctx, "incumbent"); err != nil {
		t.Fatal(err)
	}
	cands := []struct {
		v    string
		prio int
	}{{"a", 1}, {"b", 5}, {"c", 3}, {"d", 5}, {"e", -2}}
	es := map[string]*election.Election{}
	won := make(chan string, len(cands))
	for i, c := range cands {
		e := election.New(newSession(t, srv.Client(), r), "prio", rule)
		es[c.v] = e
		go func() {
			if err := e.Campaign(ctx, c.v, election.WithPriority(c.prio)); err != nil {
				t.Errorf("campaign %s: %v", c.v, err)
				return
			}
			won <- c.v
		}()
		eventually(t, 5*time.Second, c.v+" queued", func() bool { return countCandidates(t, r) == i+2 })
	}
	// Without preemption the incumbent keeps leading though every one
	// else has a higher priority.
	if l, err := incumbent.Leader(ctx); err != nil || l.Value != "incumbent" {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	cs, err := incumbent.Candidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, c := range cs {
		listed = append(listed, c.Value)
	}
	if got, want := strings.Join(listed, ","), "incumbent,b,d,c,a,e"; got != want {
		t.Fatalf("Candidates in election order = %s, want %s", got, want)
	}
	if !cs[0].Leader || cs[1].Priority != 5 {
		t.Fatalf("Candidates = %+v", cs)
	}
	if err := incumbent.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"b", "d", "c", "a", "e"} {
		select {
		case got := <-won:
			if got != want {
				t.Fatalf("%s led, want %s", got, want)
			}
			if err := es[got].Resign(ctx); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not lead within 5s", want)
		}
	}
}

// With preemption, a candidate of higher priority takes over through a
// graceful handover: the old leader's work ends before the new one's
// starts, and every term's token is above the last. On a 3-member cluster.
func TestPreemptionHandsOverGracefully(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	ctx := ctxT(t, 60*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := newOverlap(t)
	rule := election.WithRule(election.Rule{Priority: true, Preempt: true})
	var wg sync.WaitGroup
	start := func(value string, prio int) {
		cli, err := c.NewClient(nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			err := election.Run(rctx, cli, "svc", value, o.fn(value), rule, election.WithCampaign(election.WithPriority(prio)),
				election.WithPrefix("preempt/"), election.WithTTL(5*time.Second))
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run %s: %v", value, err)
			}
		})
	}
	start("low", 1)
	if v := o.next(t); v != "low" {
		t.Fatalf("%s led first", v)
	}
	start("mid", 5)
	if v := o.next(t); v != "mid" {
		t.Fatalf("%s took over, want mid", v)
	}
	start("lower", 0) // no preemption by a lower priority
	start("top", 9)
	if v := o.next(t); v != "top" {
		t.Fatalf("%s took over, want top", v)
	}
	select {
	case v := <-o.started:
		t.Fatalf("%s started while top leads", v)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	wg.Wait()
}

// Transfer hands the leadership to a chosen candidate: it leads next, at
// once, and no other candidate takes it in between; RequestTransfer makes
// a Run leader do it after its work stops.
func TestTransferToAChosenCandidate(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	leader := election.New(newSession(t, srv.Client(), r), "xfer")
	if err := leader.Campaign(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	next := election.New(newSession(t, srv.Client(), r), "xfer")
	nextRes := campaignAsync(ctx, next, "next-in-line")
	chosen := election.New(newSession(t, srv.Client(), r), "xfer")
	chosenRes := campaignAsync(ctx, chosen, "chosen")
	eventually(t, 5*time.Second, "both queued", func() bool { return countCandidates(t, r) == 3 })
	obs := leader.Observe(ctx)
	expect(t, obs, election.Leader{Value: "leader", Token: leader.Token()})
	if err := leader.Transfer(ctx, "chosen"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-chosenRes:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the chosen candidate did not lead within 5s of the transfer")
	}
	// The very next state is the chosen one: no gap, no one else.
	if got := next2(t, obs); got.Value != "chosen" || got.Token != chosen.Token() {
		t.Fatalf("after the transfer the leader was %+v, want chosen with token %d", got, chosen.Token())
	}
	select {
	case <-leader.Done():
	default:
		t.Fatal("the old leader's Done is open after Transfer")
	}
	if err := chosen.Transfer(ctx, "nobody"); !errors.Is(err, election.ErrNoCandidate) {
		t.Fatalf("Transfer to an unknown candidate: %v, want ErrNoCandidate", err)
	}
	if chosen.Token() == 0 {
		t.Fatal("a failed Transfer gave up the leadership")
	}
	if err := next.Transfer(ctx, "chosen"); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Transfer by a non-leader: %v, want ErrNotLeader", err)
	}
	if err := chosen.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-nextRes; err != nil {
		t.Fatal(err)
	}
	next.Resign(ctx)
}

func next2(t *testing.T, ch <-chan election.Leader) election.Leader { t.Helper(); return next(t, ch) }

// A transfer whose target's session dies first fails with ErrNoCandidate,
// still leading: the leadership is never left vacant by it.
func TestTransferToADyingCandidate(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	leader := election.New(newSession(t, srv.Client(), r), "dying")
	if err := leader.Campaign(ctx, "leader"); err != nil {
		t.Fatal(err)
	}
	ts := newSession(t, srv.Client(), r)
	target := election.New(ts, "dying")
	res := campaignAsync(ctx, target, "target")
	eventually(t, 5*time.Second, "target queued", func() bool { return countCandidates(t, r) == 2 })
	cs, err := leader.Candidates(ctx)
	if err != nil || len(cs) != 2 {
		t.Fatalf("Candidates = %+v, %v", cs, err)
	}
	id := cs[1].ID
	if _, err := srv.Client().Revoke(ctx, ts.Lease()); err != nil {
		t.Fatal(err)
	}
	<-res
	err = leader.Transfer(ctx, id)
	if !errors.Is(err, election.ErrNoCandidate) {
		t.Fatalf("Transfer to a candidate whose session died: %v, want ErrNoCandidate", err)
	}
	if l, err := leader.Leader(ctx); err != nil || l.Value != "leader" || leader.Token() == 0 {
		t.Fatalf("after the failed transfer: leader %+v, %v, token %d", l, err, leader.Token())
	}
}

// RequestTransfer, from anyone (no session needed), makes a Run leader
// stop its work and hand over to the target.
func TestRequestTransferMovesRunLeader(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	o := newOverlap(t)
	var wg sync.WaitGroup
	for _, v := range []string{"first", "second", "third"} {
		wg.Go(func() {
			election.Run(rctx, srv.Client(), "req", v, o.fn(v), election.WithPrefix(r), election.WithTTL(5*time.Second))
		})
		if v == "first" {
			if got := o.next(t); got != "first" {
				t.Fatalf("%s led first", got)
			}
		}
	}
	eventually(t, 5*time.Second, "all queued", func() bool { return countCandidates(t, r) == 3 })
	obs := election.NewObserver(srv.Client(), "req", election.WithPrefix(r))
	if err := obs.RequestTransfer(ctx, "third"); err != nil {
		t.Fatal(err)
	}
	if got := o.next(t); got != "third" {
		t.Fatalf("%s led after the request, want third", got)
	}
	if err := obs.RequestTransfer(ctx, "nobody"); !errors.Is(err, election.ErrNoCandidate) {
		t.Fatalf("request for an unknown candidate: %v", err)
	}
	cancel()
	wg.Wait()
}

// An observer candidate is listed and never leads, even when it is the
// only candidate left.
func TestFollowNeverLeads(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	dash := election.New(newSession(t, srv.Client(), r), "follow")
	if err := dash.Follow(ctx, "dashboard", election.WithMeta(map[string]string{"zone": "a"})); err != nil {
		t.Fatal(err)
	}
	e := election.New(newSession(t, srv.Client(), r), "follow")
	if err := e.Campaign(ctx, "worker"); err != nil {
		t.Fatal(err)
	}
	cs, err := dash.Candidates(ctx)
	if err != nil || len(cs) != 2 || cs[0].Value != "worker" || !cs[1].Observer || cs[1].Meta["zone"] != "a" {
		t.Fatalf("Candidates = %+v, %v", cs, err)
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := dash.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("with only an observer left: %v, want ErrNoLeader", err)
	}
	if dash.Token() != 0 {
		t.Fatal("an observer has a token")
	}
	if err := dash.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("%d candidates left", n)
	}
}

// Candidates are listed alike after a compaction (the listing is a read,
// and Observe's mirror reloads).
func TestCandidatesAcrossCompaction(t *testing.T) {
	r := root(t)
	ctx := ctxT(t, 30*time.Second)
	a := election.New(newSession(t, srv.Client(), r), "list")
	if err := a.Campaign(ctx, "a", election.WithMeta(map[string]string{"v": "1.2"})); err != nil {
		t.Fatal(err)
	}
	b := election.New(newSession(t, srv.Client(), r), "list")
	resB := campaignAsync(ctx, b, "b")
	eventually(t, 5*time.Second, "b queued", func() bool { return countCandidates(t, r) == 2 })
	before, err := a.Candidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := election.NewObserver(srv.Client(), "list", election.WithPrefix(r)).Candidates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) || len(after) != 2 || after[0].Meta["v"] != "1.2" {
		t.Fatalf("before %+v, after %+v", before, after)
	}
	a.Resign(ctx)
	if err := <-resB; err != nil {
		t.Fatal(err)
	}
	b.Resign(ctx)
}

func TestSteeringBadInput(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 10*time.Second)
	e := election.New(newSession(t, srv.Client(), r), "bad")
	if err := e.Campaign(ctx, "x", election.WithPriority(election.MaxPriority+1)); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("priority out of range: %v", err)
	}
	big := map[string]string{"k": strings.Repeat("x", election.MaxMetaBytes)}
	if err := e.Campaign(ctx, "x", election.WithMeta(big)); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("metadata over the limit: %v", err)
	}
	if err := election.New(newSession(t, srv.Client(), r), "bad", election.WithRule(election.Rule{Preempt: true})).Campaign(ctx, "x"); !errors.Is(err, election.ErrInvalid) {
		t.Errorf("preemption without priorities: %v", err)
	}
	if n := countCandidates(t, r); n != 0 {
		t.Fatalf("bad input left %d keys", n)
	}
	// A candidate with another rule than the stored one is refused.
	p := election.New(newSession(t, srv.Client(), r), "ruled", election.WithRule(election.Rule{Priority: true}))
	if err := p.Campaign(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	fifo := election.New(newSession(t, srv.Client(), r), "ruled", election.WithRule(election.Rule{}))
	if err := fifo.Campaign(ctx, "f"); !errors.Is(err, election.ErrRuleMismatch) {
		t.Errorf("a different rule: %v, want ErrRuleMismatch", err)
	}
	p.Resign(ctx)
}

// Health: a leader whose session cannot renew for longer than the
// threshold is unhealthy; a replica that does not lead is healthy.
func TestHealthOfAStuckLeader(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := ctxT(t, 30*time.Second)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := election.NewHealth(time.Second)
	leading := make(chan struct{})
	go election.Run(rctx, cli, "health", "a", func(ctx context.Context) error {
		close(leading)
		<-ctx.Done()
		return nil
	}, election.WithPrefix(root(t)), election.WithTTL(10*time.Second), election.WithHealth(h))
	select {
	case <-leading:
	case <-time.After(5 * time.Second):
		t.Fatal("not leading within 5s")
	}
	// Healthy through several renewals (every 2.5 s at TTL 10 s).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := h.Check(); err != nil {
			t.Fatalf("a healthy leader: %v", err)
		}
	}
	p.Blackhole()
	defer p.Restore()
	eventually(t, 10*time.Second, "unhealthy while the session cannot renew", func() bool { return h.Check() != nil })
	t.Logf("unhealthy: %v", h.Check())
}

// An Observer needs no session: a user who may only read coord's root
// follows the election, granting no lease.
func TestObserverForAReadOnlyUser(t *testing.T) {
	t.Parallel()
	own := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithBcryptCost(4)) // bcrypt.MinCost: logins are not what this tests
	ctx := ctxT(t, 60*time.Second)
	if err := etcdtest.EnableAuth(ctx, own.Client(), "rootpw"); err != nil {
		t.Fatal(err)
	}
	rootCli, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"))
	if err != nil {
		t.Fatal(err)
	}
	defer rootCli.Close()
	if err := etcdtest.AddUser(ctx, rootCli, "app", "pw", "coord/", true); err != nil {
		t.Fatal(err)
	}
	if err := etcdtest.AddUser(ctx, rootCli, "viewer", "pw", "coord/", false); err != nil {
		t.Fatal(err)
	}
	app, _ := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("app", "pw"))
	defer app.Close()
	viewer, _ := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("viewer", "pw"))
	defer viewer.Close()
	s, err := session.New(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := election.New(s, "api")
	if err := e.Campaign(ctx, "host-a"); err != nil {
		t.Fatal(err)
	}
	before, _ := rootCli.Leases(ctx)
	o := election.NewObserver(viewer, "api")
	l, err := o.Leader(ctx)
	if err != nil || l.Value != "host-a" || l.Token != e.Token() {
		t.Fatalf("Leader = %+v, %v", l, err)
	}
	ch := o.Observe(ctx)
	expect(t, ch, l)
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, election.Leader{})
	after, _ := rootCli.Leases(ctx)
	if len(after.Leases) != len(before.Leases) {
		t.Fatalf("the observer granted a lease: %d before, %d after", len(before.Leases), len(after.Leases))
	}
}
