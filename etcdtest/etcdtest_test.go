package etcdtest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestServerServes(t *testing.T) {
	t.Parallel()
	start := time.Now()
	srv := etcdtest.NewServer(t)
	t.Logf("NewServer ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.Client().Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
}

func TestCounterCountsRPCs(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.Reset()
	cli.Put(ctx, "a", "1")
	cli.Get(ctx, "a")
	cli.Txn(ctx).Then(clientv3.OpGet("a")).Commit()
	wctx, wcancel := context.WithCancel(ctx)
	wc := cli.Watch(wctx, "a", clientv3.WithCreatedNotify())
	<-wc
	wcancel()
	if c.Get("Put") != 1 || c.Get("Range") != 1 || c.Get("Txn") != 1 || c.Get("Watch.Create") != 1 {
		t.Fatalf("counts: %s", c)
	}
}

func TestProxyBlackholesAndRestores(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := srv.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	pcli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer pcli.Close()
	_ = cli
	ctx := context.Background()
	put := func(d time.Duration) error {
		c, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		_, err := pcli.Put(c, "k", "v")
		return err
	}
	if err := put(5 * time.Second); err != nil {
		t.Fatalf("through proxy: %v", err)
	}
	p.Blackhole()
	if err := put(500 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blackholed put = %v, want deadline exceeded", err)
	}
	p.Restore()
	if err := put(10 * time.Second); err != nil {
		t.Fatalf("after restore: %v", err)
	}
	p.Delay(300 * time.Millisecond)
	st := time.Now()
	if err := put(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(st); d < 500*time.Millisecond {
		t.Fatalf("delayed put took %v, want >= 600ms round trip", d)
	}
}

func TestClusterSurvivesMemberStopAndRestart(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	t.Logf("NewCluster(3) ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cli := c.Client()
	// A put in flight when the leader dies can time out on the server
	// (etcd does not retry a non-idempotent request), so retry until the
	// cluster serves again.
	put := func(i int) {
		t.Helper()
		var err error
		for try := 0; try < 10; try++ {
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			_, err = cli.Put(pctx, "k", fmt.Sprint(i))
			pcancel()
			if err == nil {
				return
			}
		}
		t.Fatalf("put %d: %v", i, err)
	}
	put(0)
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(lead)
	put(1)
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	follower := (lead + 1) % 3
	c.Stop(follower)
	if c.Running(follower) {
		t.Fatal("stopped member still running")
	}
	// Two of three members are down: no quorum, so a put must fail.
	pctx, pcancel := context.WithTimeout(ctx, time.Second)
	if _, err := cli.Put(pctx, "k", "x"); err == nil {
		t.Fatal("put succeeded with one member of three")
	}
	pcancel()
	if err := c.Restart(lead); err != nil {
		t.Fatal(err)
	}
	put(2)
	if err := c.Restart(follower); err != nil {
		t.Fatal(err)
	}
	put(3)
	to := (lead + 2) % 3
	if err := c.MoveLeader(ctx, to); err != nil {
		t.Fatal(err)
	}
	if l := c.Leader(); l != to {
		t.Fatalf("leader %d after MoveLeader(%d)", l, to)
	}
	put(4)
	for i := 0; i < 3; i++ {
		mc, err := c.NewClient([]string{c.Endpoint(i)})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := mc.Get(ctx, "k")
		if err != nil || string(resp.Kvs[0].Value) != "4" {
			t.Fatalf("member %d: %v %v", i, resp, err)
		}
	}
}

func TestNewTestClientClosesAtCleanup(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	var cli *clientv3.Client
	t.Run("user", func(t *testing.T) {
		cli = etcdtest.NewTestClient(t, srv.Endpoints())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, "k", "v"); err != nil {
			t.Fatal(err)
		}
	})
	select {
	case <-cli.Ctx().Done():
	default:
		t.Fatal("the client is still open after its test ended")
	}
}
