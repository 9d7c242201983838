package etcdtest_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// binary returns the etcd binary named by COORD_ETCD_BINARY, or skips.
func binary(t *testing.T) string {
	bin := os.Getenv(etcdtest.BinaryEnv)
	if bin == "" {
		t.Skipf("set %s to an etcd binary (scripts/build-etcd.sh) to run the process tests", etcdtest.BinaryEnv)
	}
	return bin
}

func TestProcessServer(t *testing.T) {
	binary(t)
	start := time.Now()
	// No WithBinary: the environment variable alone makes it a process,
	// with the options turned into flags.
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithMaxRequestBytes(4096),
		etcdtest.WithElectionTimeout(50*time.Millisecond, 500*time.Millisecond))
	t.Logf("etcd process ready in %v", time.Since(start))
	if srv.Etcd() != nil {
		t.Fatal("Etcd() is an embedded server, want a process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := srv.Client().Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	// --max-request-bytes reached the process: a value over it is refused.
	if _, err := srv.Client().Put(ctx, "big", string(make([]byte, 8192))); err == nil {
		t.Fatal("an 8 KiB put passed a 4 KiB --max-request-bytes")
	}
	st, err := srv.Client().Status(ctx, srv.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server version %s", st.Version)

	embedded := etcdtest.NewServer(t, etcdtest.WithBinary(""), etcdtest.WithoutFsync())
	if embedded.Etcd() == nil {
		t.Fatal(`WithBinary("") did not give an embedded server`)
	}
}

func TestProcessCluster(t *testing.T) {
	bin := binary(t)
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
