package etcdtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

func TestProcessCluster(t *testing.T) {
	bin := os.Getenv("COORD_ETCD_BINARY")
	if bin == "" {
		t.Skip("set COORD_ETCD_BINARY to an etcd binary to run the process cluster test")
	}
	start := time.Now()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithBinary(bin), etcdtest.WithoutFsync())
	t.Logf("3 etcd processes ready in %v", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func() {
		t.Helper()
		for i := 0; ; i++ {
			pctx, pc := context.WithTimeout(ctx, 2*time.Second)
			_, err := c.Client().Put(pctx, "k", "v")
			pc()
			if err == nil {
				return
			}
			if i == 20 {
				t.Fatal(err)
			}
		}
	}
	put()
	lead, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(lead); err != nil {
		t.Fatal(err)
	}
	put() // the others elect a new leader
	if err := c.Resume(lead); err != nil {
		t.Fatal(err)
	}
	c.Kill(lead)
	put()
	if err := c.Restart(lead); err != nil {
		t.Fatal(err)
	}
	if err := c.MoveLeader(ctx, lead); err != nil {
		t.Fatal(err)
	}
	put()
}
