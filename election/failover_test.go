package election_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestBlackholedLeaderKnowsFirst cuts a leader's client off from every
// member of a 3-member cluster and checks, in each of 10 concurrent
// trials, that the old leader's Done has fired by the time its
// successor's Campaign returns: there is never a moment when both believe
// they lead.
func TestBlackholedLeaderKnowsFirst(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	ctx := ctxT(t, 60*time.Second)
	const trials = 10
	type setup struct {
		ps   etcdtest.Proxies
		old  *election.Election
		next *election.Election
		root string
	}
	trialsSetup := make([]setup, trials)
	for i := range trialsSetup {
		ps := etcdtest.NewProxies(t, c.Endpoints())
		cli, err := etcdtest.NewClient(ps.Endpoints())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		r := fmt.Sprintf("%strial%d/", root(t), i)
		s1 := newSession(t, cli, r, session.WithTTL(2*time.Second))
		s2 := newSession(t, c.Client(), r, session.WithTTL(2*time.Second))
		trialsSetup[i] = setup{ps: ps, old: election.New(s1, "failover"), next: election.New(s2, "failover"), root: r}
	}
	count := func(r string) int {
		resp, err := c.Client().Get(ctx, r+"election/failover/c/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Error(err)
			return -1
		}
		return int(resp.Count)
	}
	var wg sync.WaitGroup
	leads := make([]time.Duration, trials)
	for i, tr := range trialsSetup {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer tr.ps.Restore()
			if err := tr.old.Campaign(ctx, "old"); err != nil {
				t.Errorf("trial %d: %v", i, err)
				return
			}
			res := campaignAsync(ctx, tr.next, "next")
			for count(tr.root) != 2 {
				if ctx.Err() != nil {
					t.Errorf("trial %d: successor never queued", i)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			// Cut off at a different point of the keepalive cycle each time.
			time.Sleep(time.Duration(i*67) * time.Millisecond)
			tr.ps.Blackhole()
			fired := make(chan time.Time, 1)
			go func() {
				<-tr.old.Done()
				fired <- time.Now()
			}()
			select {
			case err := <-res:
				won := time.Now()
				if err != nil {
					t.Errorf("trial %d: successor: %v", i, err)
					return
				}
				if !isClosed(tr.old.Done()) {
					t.Errorf("trial %d: successor leads while the old leader's Done is open", i)
					return
				}
				leads[i] = won.Sub(<-fired)
			case <-time.After(20 * time.Second):
				t.Errorf("trial %d: successor not elected within 20s", i)
			}
		}()
	}
	wg.Wait()
	lo, hi := leads[0], leads[0]
	for _, l := range leads {
		lo, hi = min(lo, l), max(hi, l)
	}
	t.Logf("the old leader's Done led the successor's win by %v to %v over %d trials (TTL 2s)", lo, hi, trials)
}

// TestObserveThroughMemberFailover stops the raft leader of a 3-member
// cluster while a leader proclaims, and checks Observe goes on, in order.
func TestObserveThroughMemberFailover(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	ctx := ctxT(t, 60*time.Second)
	r := root(t)
	oc, err := c.NewClient(c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	ch := election.New(newSession(t, oc, r, session.WithTTL(10*time.Second)), "fo").Observe(ctx)
	expect(t, ch, election.Leader{})
	a := election.New(newSession(t, c.Client(), r, session.WithTTL(10*time.Second)), "fo")
	if err := a.Campaign(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, leading(a, "a1"))
	lead := c.Leader()
	c.Stop(lead)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// The client may need a moment to leave the stopped member.
	for {
		err := a.Proclaim(ctx, "a2")
		if err == nil {
			break
		}
		if errors.Is(err, election.ErrNotLeader) || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	expect(t, ch, leading(a, "a2"))
	if err := c.Restart(lead); err != nil {
		t.Fatal(err)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	expect(t, ch, election.Leader{})
}
