package election_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/benchutil"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Benchmarks run coord and etcd's concurrency.Election side by side on
// one embedded server with fsync on, each candidate on its own counted
// client, so rpcs/op is what the candidates really sent (keepalives
// included).

// contender is one candidate of either implementation.
type contender interface {
	campaign(ctx context.Context) error
	resign(ctx context.Context) error
	// kill revokes the session (as a crash detected by the server would
	// end it) and makes a new one for the next campaign.
	kill(ctx context.Context) error
	close()
}

type impl struct {
	name string
	// make returns a candidate on cli for election name, with keys under
	// root; count tells how many candidates are queued.
	make  func(cli *clientv3.Client, root, name string) (contender, error)
	count func(ctx context.Context, cli *clientv3.Client, root string) (int, error)
}

var impls = []impl{
	{name: "coord", make: newCoordContender, count: countUnder("election/")},
	{name: "etcd", make: newEtcdContender, count: countUnder("")},
}

func countUnder(sub string) func(ctx context.Context, cli *clientv3.Client, root string) (int, error) {
	return func(ctx context.Context, cli *clientv3.Client, root string) (int, error) {
		resp, err := cli.Get(ctx, root+sub, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return 0, err
		}
		return int(resp.Count), nil
	}
}

type coordContender struct {
	cli        *clientv3.Client
	root, name string
	s          *session.Session
	e          *election.Election
}

func newCoordContender(cli *clientv3.Client, root, name string) (contender, error) {
	c := &coordContender{cli: cli, root: root, name: name}
	return c, c.renew(context.Background())
}

func (c *coordContender) renew(ctx context.Context) error {
	s, err := session.New(ctx, c.cli, session.WithPrefix(c.root))
	if err != nil {
		return err
	}
	c.s, c.e = s, election.New(s, c.name)
	return nil
}

func (c *coordContender) campaign(ctx context.Context) error { return c.e.Campaign(ctx, "v") }
func (c *coordContender) resign(ctx context.Context) error   { return c.e.Resign(ctx) }
func (c *coordContender) kill(ctx context.Context) error {
	c.s.Close()
	return c.renew(ctx)
}
func (c *coordContender) close() { c.s.Close() }

type etcdContender struct {
	cli        *clientv3.Client
	root, name string
	s          *concurrency.Session
	e          *concurrency.Election
}

func newEtcdContender(cli *clientv3.Client, root, name string) (contender, error) {
	c := &etcdContender{cli: cli, root: root, name: name}
	return c, c.renew()
}

func (c *etcdContender) renew() error {
	s, err := concurrency.NewSession(c.cli, concurrency.WithTTL(15))
	if err != nil {
		return err
	}
	c.s, c.e = s, concurrency.NewElection(s, c.root+c.name)
	return nil
}

func (c *etcdContender) campaign(ctx context.Context) error { return c.e.Campaign(ctx, "v") }
func (c *etcdContender) resign(ctx context.Context) error   { return c.e.Resign(ctx) }
func (c *etcdContender) kill(context.Context) error {
	c.s.Close()
	return c.renew()
}
func (c *etcdContender) close() { c.s.Close() }

var benchSeq atomic.Int64

// handoffs has n candidates pass the leadership around b.N times. Each
// leader, once elected, records the time since its predecessor let go,
// then lets go itself (resign, or a revoked session) and queues again.
func handoffs(b *testing.B, srv *etcdtest.Server, im impl, n int, kill bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := fmt.Sprintf("bench%d/", benchSeq.Add(1))
	counter := etcdtest.NewCounter()
	cs := make([]contender, n)
	for i := range cs {
		cli, err := srv.NewClient(etcdtest.WithCounter(counter))
		if err != nil {
			b.Fatal(err)
		}
		if cs[i], err = im.make(cli, root, "bench"); err != nil {
			b.Fatal(err)
		}
	}
	defer func() {
		for _, c := range cs {
			c.close()
		}
	}()
	var (
		lat      benchutil.Latencies
		wins     atomic.Int64
		released atomic.Int64 // unix nanos when the leader let go
		started  = make(chan struct{})
		wg       sync.WaitGroup
	)
	counter.Reset()
	begin := time.Now()
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i > 0 {
				// The first candidate leads; the rest queue behind it.
				select {
				case <-started:
				case <-ctx.Done():
					return
				}
			}
			for {
				if err := c.campaign(ctx); err != nil {
					if ctx.Err() == nil {
						b.Errorf("campaign: %v", err)
						cancel()
					}
					return
				}
				if t := released.Load(); t != 0 {
					lat.Since(time.Unix(0, t))
				}
				if wins.Add(1) >= int64(b.N) {
					cancel()
					c.resign(context.Background())
					return
				}
				if i == 0 && released.Load() == 0 {
					close(started)
					for {
						q, err := im.count(ctx, srv.Client(), root)
						if err != nil || q >= n {
							break
						}
						time.Sleep(time.Millisecond)
					}
				}
				released.Store(time.Now().UnixNano())
				var err error
				if kill {
					err = c.kill(ctx)
				} else {
					err = c.resign(ctx)
				}
				if err != nil && ctx.Err() == nil {
					b.Errorf("let go: %v", err)
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	benchutil.Report(b, b.N, time.Since(begin), &lat, counter)
	if lat.Len() > 0 {
		b.ReportMetric(float64(lat.Percentile(90).Microseconds())/1000, "p90-ms")
	}
}

// BenchmarkResignHandoff: time from the leader's Resign to the next
// candidate's Campaign returning, with 4 candidates.
func BenchmarkResignHandoff(b *testing.B) {
	srv := etcdtest.NewServer(b)
	for _, n := range []int{2, 4, 8} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/candidates=%d", im.name, n), func(b *testing.B) { handoffs(b, srv, im, n, false) })
		}
	}
}

// BenchmarkRevokeFailover: time from revoking the leader's session to
// the successor's Campaign returning, with 4 candidates.
func BenchmarkRevokeFailover(b *testing.B) {
	srv := etcdtest.NewServer(b)
	for _, n := range []int{4, 8} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/candidates=%d", im.name, n), func(b *testing.B) { handoffs(b, srv, im, n, true) })
		}
	}
}

// BenchmarkCampaignUncontended: Campaign with no leader, then Resign.
// rpcs/op counts both; txn/campaign is the campaign's Txns alone.
func BenchmarkCampaignUncontended(b *testing.B) {
	srv := etcdtest.NewServer(b)
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			ctx := context.Background()
			counter := etcdtest.NewCounter()
			cli, err := srv.NewClient(etcdtest.WithCounter(counter))
			if err != nil {
				b.Fatal(err)
			}
			c, err := im.make(cli, fmt.Sprintf("bench%d/", benchSeq.Add(1)), "solo")
			if err != nil {
				b.Fatal(err)
			}
			defer c.close()
			var lat benchutil.Latencies
			var campaignTxns int64
			counter.Reset()
			begin := time.Now()
			for range b.N {
				before := counter.Get("Txn")
				start := time.Now()
				if err := c.campaign(ctx); err != nil {
					b.Fatal(err)
				}
				lat.Since(start)
				campaignTxns += counter.Get("Txn") - before
				if err := c.resign(ctx); err != nil {
					b.Fatal(err)
				}
			}
			benchutil.Report(b, b.N, time.Since(begin), &lat, counter)
			b.ReportMetric(float64(campaignTxns)/float64(b.N), "txn/campaign")
		})
	}
}
