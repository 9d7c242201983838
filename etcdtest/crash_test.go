package etcdtest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestKillAllRestartAll crashes every member at once and brings the
// cluster back from its data directories: what was committed before the
// crash is there after it, at the same revision, and the cluster takes
// writes again on the same endpoints.
func TestKillAllRestartAll(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	cli := c.Client()
	ctx := etcdtest.Context(t, 90*time.Second)
	var last int64
	for i := 0; i < 20; i++ {
		resp, err := cli.Put(ctx, "k", strings.Repeat("v", i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	c.KillAll()
	for i := 0; i < c.Size(); i++ {
		if c.Running(i) {
			t.Fatalf("member %d still running after KillAll", i)
		}
	}
	gctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := cli.Get(gctx, "k"); err == nil {
		t.Fatal("a read succeeded with every member killed")
	}
	cancel()
	if err := c.RestartAll(); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != last || len(resp.Kvs[0].Value) != 19 {
		t.Fatalf("after the restart k = %v at rev %d, want 19 bytes at rev %d", resp.Kvs, resp.Header.Revision, last)
	}
	if _, err := cli.Put(ctx, "k", "after"); err != nil {
		t.Fatal(err)
	}
}

// TestQuotaBackendBytes fills a server with a small quota until etcd
// raises the NOSPACE alarm.
func TestQuotaBackendBytes(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithQuotaBackendBytes(1<<20))
	cli := srv.Client()
	ctx := etcdtest.Context(t, 60*time.Second)
	val := strings.Repeat("x", 64<<10)
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		_, err = cli.Put(ctx, "fill", val)
	}
	if err == nil || !strings.Contains(err.Error(), rpctypes.ErrNoSpace.Error()) {
		t.Fatalf("after filling a 1 MiB quota: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(alarms.Alarms) == 0 || alarms.Alarms[0].Alarm != etcdserverpb.AlarmType_NOSPACE {
		t.Fatalf("alarms %v, want NOSPACE", alarms.Alarms)
	}
}
