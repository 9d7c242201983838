package wait_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// line puts two keys under prefix and returns the waiter's queue (the
// second key) and its predecessor.
func line(t *testing.T, cli *clientv3.Client, prefix string) (wait.Queue, string, int64) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	for {
		if _, err := cli.Put(ctx, prefix+"a", "first"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Put(ctx, prefix+"b", "second")
	if err != nil {
		t.Fatal(err)
	}
	return wait.Queue{Prefix: prefix, Own: prefix + "b", Rev: resp.Header.Revision}, prefix + "a", resp.Header.Revision
}

func startWait(ctx context.Context, cli *clientv3.Client, q wait.Queue, pred string, since int64, stops ...wait.Stopper) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- wait.NoneBefore(ctx, cli, q, pred, since, stops...) }()
	return errc
}

func notYet(t *testing.T, errc <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-errc:
		t.Fatalf("wait ended early: %v", err)
	case <-time.After(d):
	}
}

func within(t *testing.T, errc <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		t.Fatalf("wait did not end within %v", d)
		return nil
	}
}

func TestNoneBeforeWakesOnPredecessorOnly(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := srv.Client()
	q, pred, since := line(t, cli, "t1/")
	errc := startWait(ctxT(t, 30*time.Second), cli, q, pred, since)
	// Unrelated writes under the prefix and elsewhere do not end it.
	cli.Put(context.Background(), "t1/z", "later")
	cli.Put(context.Background(), "t1/a", "rewritten")
	notYet(t, errc, 200*time.Millisecond)
	start := time.Now()
	cli.Delete(context.Background(), pred)
	if err := within(t, errc, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("woke %v after the delete", time.Since(start))
}

func TestNoneBeforeWalksBackPastCancelledWaiters(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := srv.Client()
	ctx := ctxT(t, 30*time.Second)
	cli.Put(ctx, "t2/0", "holder")
	cli.Put(ctx, "t2/1", "waiter")
	resp, _ := cli.Put(ctx, "t2/2", "me")
	q := wait.Queue{Prefix: "t2/", Own: "t2/2", Rev: resp.Header.Revision}
	errc := startWait(ctx, cli, q, "t2/1", resp.Header.Revision)
	cli.Delete(ctx, "t2/1") // the waiter before me gives up
	notYet(t, errc, 200*time.Millisecond)
	cli.Delete(ctx, "t2/0")
	if err := within(t, errc, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestNoneBeforeReportsOwnKeyDeleted(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := srv.Client()
	ctx := ctxT(t, 30*time.Second)
	q, pred, since := line(t, cli, "t3/")
	hold := wait.NewHold(cli, q.Own, q.Rev)
	errc := startWait(ctx, cli, q, pred, since, hold)
	cli.Delete(ctx, q.Own)
	if err := within(t, errc, 2*time.Second); !errors.Is(err, wait.ErrKeyGone) {
		t.Fatalf("err = %v, want ErrKeyGone", err)
	}
}

func TestWaitEndsOnSessionLoss(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := srv.Client()
	ctx := ctxT(t, 30*time.Second)
	s, err := session.New(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q, pred, since := line(t, cli, "t4/")
	errc := startWait(ctx, cli, q, pred, since, s)
	notYet(t, errc, 100*time.Millisecond)
	cli.Revoke(ctx, s.Lease())
	if err := within(t, errc, 2*time.Second); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("err = %v, want session.ErrExpired", err)
	}
}

func TestWaitSurvivesCompaction(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := srv.Client()
	ctx := ctxT(t, 30*time.Second)
	q, pred, since := line(t, cli, "t5/")
	errc := startWait(ctx, cli, q, pred, since)
	hold := wait.NewHold(cli, q.Own, q.Rev)
	for i := 0; i < 10; i++ {
		cli.Put(ctx, "t5-noise", fmt.Sprint(i))
		if err := srv.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	notYet(t, errc, 100*time.Millisecond)
	cli.Delete(ctx, pred)
	if err := within(t, errc, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hold.Done():
		t.Fatalf("hold lost through compaction: %v", hold.Err())
	default:
	}
	cli.Delete(ctx, q.Own)
	select {
	case <-hold.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("hold did not see its key deleted")
	}
}

// TestWaitSurvivesMemberRestarts kills and restarts every member in turn
// while a waiter waits on a 3-member cluster, compacting while each member
// is down so a resumed watch would start at a compacted revision, and
// deletes the predecessor while the waiter's member may be down. The wait
// must neither end early nor miss the delete.
func TestWaitSurvivesMemberRestarts(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	cli, err := c.NewClient(nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.Client()
	ctx := ctxT(t, 120*time.Second)
	q, pred, since := line(t, cli, "t6/")
	errc := startWait(ctx, cli, q, pred, since)
	hold := wait.NewHold(cli, q.Own, q.Rev)
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
	for i := 0; i < 3; i++ {
		c.Kill(i)
		retry(func(ctx context.Context) error { _, err := admin.Put(ctx, "t6-noise", fmt.Sprint(i)); return err })
		retry(func(ctx context.Context) error { return c.Compact(ctx) })
		if i == 2 {
			retry(func(ctx context.Context) error { _, err := admin.Delete(ctx, pred); return err })
		} else {
			notYet(t, errc, 50*time.Millisecond)
		}
		if err := c.Restart(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := within(t, errc, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hold.Done():
		t.Fatalf("hold lost across restarts: %v", hold.Err())
	default:
	}
}
