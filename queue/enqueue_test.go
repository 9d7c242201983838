package queue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Producers racing the same unique job get exactly one; the others get
// ErrDuplicate with its id. The key is free again once the job is acked;
// a UniqueFor key outlives the ack for its period.
func TestUniqueRaceAndRelease(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := qname(t, "unique")
	// Two producers: two clients, each with its own Queue value.
	var qs []*queue.Queue
	for range 2 {
		cli, err := srv.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		qs = append(qs, queue.New(cli, name))
	}
	const racers = 16
	var wg sync.WaitGroup
	ids := make([]string, racers)
	errs := make([]error, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = qs[i%2].Enqueue(ctx, []byte(fmt.Sprint(i)), queue.Unique("report-2026-12-01"))
		})
	}
	close(start)
	wg.Wait()
	var winner string
	for i, err := range errs {
		switch {
		case err == nil && winner != "":
			t.Fatalf("two producers enqueued the unique job: %s and %s", winner, ids[i])
		case err == nil:
			winner = ids[i]
		case !errors.Is(err, queue.ErrDuplicate):
			t.Fatalf("racer %d: %v, want nil or ErrDuplicate", i, err)
		}
	}
	if winner == "" {
		t.Fatal("no producer enqueued the unique job")
	}
	for i, err := range errs {
		if err != nil && ids[i] != winner {
			t.Errorf("racer %d refused with id %q, want the existing job's %q", i, ids[i], winner)
		}
	}
	if n, _ := qs[0].Len(ctx); n != 1 {
		t.Fatalf("Len %d after the race, want 1", n)
	}
	// Claimed, it is still in flight: refused.
	s := newSession(t)
	m := claim(t, qs[0], s, 5*time.Second)
	if _, err := qs[1].Enqueue(ctx, []byte("again"), queue.Unique("report-2026-12-01")); !errors.Is(err, queue.ErrDuplicate) {
		t.Fatalf("enqueue while the job is in flight: %v, want ErrDuplicate", err)
	}
	if err := m.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := qs[1].Enqueue(ctx, []byte("tomorrow"), queue.Unique("report-2026-12-01")); err != nil {
		t.Fatalf("enqueue after the job was acked: %v", err)
	}

	// UniqueFor: refused after the ack until the period is over.
	id, err := qs[0].Enqueue(ctx, []byte("hourly"), queue.UniqueFor("sync", 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for {
		m := claim(t, qs[0], s, 5*time.Second)
		done := m.ID == id
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
	}
	if _, err := qs[1].Enqueue(ctx, []byte("hourly"), queue.UniqueFor("sync", 2*time.Second)); !errors.Is(err, queue.ErrDuplicate) {
		t.Fatalf("UniqueFor within its period, after the ack: %v, want ErrDuplicate", err)
	}
	waitFor(t, 15*time.Second, "the UniqueFor period to end", func() bool {
		_, err := qs[1].Enqueue(ctx, []byte("hourly"), queue.UniqueFor("sync", 2*time.Second))
		return err == nil
	})
}

// A batch is all or nothing, also when the network cuts it off: after
// each batch sent through a proxy that delays past its deadline, the
// queue holds all of the batch's messages or none.
func TestEnqueueBatchAllOrNothingUnderFault(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	name := qname(t, "batchfault")
	q := queue.New(cli, name)
	const batches, size = 6, 40
	failed := 0
	for b := range batches {
		var es []queue.Entry
		for i := range size {
			es = append(es, queue.Entry{Payload: fmt.Appendf(nil, "%d/%d", b, i)})
		}
		if b%2 == 1 {
			p.Delay(500 * time.Millisecond)
		}
		limit := 10 * time.Second
		if b%2 == 1 {
			limit = 250 * time.Millisecond
		}
		bctx, cancel := context.WithTimeout(ctx, limit)
		_, err := q.EnqueueBatch(bctx, es)
		cancel()
		p.Restore()
		if b%2 == 1 {
			if err == nil {
				t.Fatalf("batch %d through a 500ms delay returned within 250ms", b)
			}
			failed++
		} else if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
	}
	// Every batch, cut off or not, landed whole or not at all.
	count := func() map[string]int {
		resp, err := srv.Client().Get(ctx, "coord/queue/"+name+"/v/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		per := map[string]int{}
		for _, kv := range resp.Kvs {
			b, _, _ := strings.Cut(string(kv.Value), "/")
			per[b]++
		}
		return per
	}
	// etcd applies a batch in one Txn, so at any moment each batch is
	// there whole or not at all, including the cut-off ones still on
	// their way through the proxy: look now, and again once they had time
	// to land (the client closed: nothing more can reach the server).
	for b, n := range count() {
		if n != 0 && n != size {
			t.Fatalf("batch %s: %d of %d messages enqueued, want all or none", b, n, size)
		}
	}
	cli.Close()
	waitFor(t, 10*time.Second, "the proxy to drop the closed client's connections", func() bool { return p.Conns() == 0 })
	for b, n := range count() {
		if n != 0 && n != size {
			t.Fatalf("batch %s: %d of %d messages enqueued, want all or none", b, n, size)
		}
	}
	if c := count(); len(c) < batches-failed {
		t.Fatalf("only %d batches landed, want at least the %d that succeeded", len(c), batches-failed)
	}
}

// Over-limit batches are ErrTooLarge before anything is sent; bad
// entries are ErrInvalid; nothing is enqueued either way.
func TestEnqueueBatchBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 10*time.Second)
	name := qname(t, "batchbad")
	q := queue.New(srv.Client(), name)
	var many []queue.Entry
	for range queue.DefaultMaxTxnOps {
		many = append(many, queue.Entry{Payload: []byte("x")})
	}
	if _, err := q.EnqueueBatch(ctx, many); !errors.Is(err, queue.ErrTooLarge) {
		t.Errorf("batch of %d messages: %v, want ErrTooLarge", len(many), err)
	}
	big := []queue.Entry{{Payload: make([]byte, 1<<20)}, {Payload: make([]byte, 1<<20)}}
	if _, err := q.EnqueueBatch(ctx, big); !errors.Is(err, queue.ErrTooLarge) {
		t.Errorf("batch of 2 MiB: %v, want ErrTooLarge", err)
	}
	bad := []queue.Entry{{Payload: []byte("ok")}, {Payload: []byte("bad"), Options: []queue.EnqueueOption{queue.WithDelay(-time.Second)}}}
	if _, err := q.EnqueueBatch(ctx, bad); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("batch with a negative delay: %v, want ErrInvalid", err)
	}
	dup := []queue.Entry{{Payload: []byte("a"), Options: []queue.EnqueueOption{queue.Unique("k")}}, {Payload: []byte("b"), Options: []queue.EnqueueOption{queue.Unique("k")}}}
	if _, err := q.EnqueueBatch(ctx, dup); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("batch with one unique key twice: %v, want ErrInvalid", err)
	}
	if k := keysUnder(t, name); len(k) != 0 {
		t.Fatalf("refused batches left keys: %v", k)
	}
}

// Settings are stored with the queue: a Queue that asks for others gets
// ErrConfigMismatch, one that asks for none follows the stored ones, and
// SetConfig changes them for every Queue of the queue.
func TestConfigIsStoredWithTheQueue(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	name := qname(t, "config")
	a := queue.New(srv.Client(), name, queue.WithMaxAttempts(3))
	if _, err := a.Enqueue(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	cli, err := srv.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	if _, err := queue.New(cli, name, queue.WithMaxAttempts(5)).Enqueue(ctx, []byte("y")); !errors.Is(err, queue.ErrConfigMismatch) {
		t.Fatalf("a Queue asking for 5 attempts of a queue stored with 3: %v, want ErrConfigMismatch", err)
	}
	plain := queue.New(cli, name)
	if c, err := plain.Config(ctx); err != nil || c.MaxAttempts != 3 {
		t.Fatalf("stored config seen by another client: %+v, %v; want 3 attempts", c, err)
	}
	c := queue.DefaultConfig
	c.MaxAttempts = 7
	if err := plain.SetConfig(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first client to see the new settings", func() bool {
		got, err := queue.New(srv.Client(), name).Config(ctx)
		return err == nil && got.MaxAttempts == 7
	})
	bad := queue.DefaultConfig
	bad.Backoff.Min = -time.Second
	if err := plain.SetConfig(ctx, bad); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("negative backoff: %v, want ErrInvalid", err)
	}
}

// A dead letter older than the queue's retention is discarded with its
// payload; younger ones stay.
func TestPurgeDeadByRetention(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	name := qname(t, "retention")
	c := queue.DefaultConfig
	c.DeadRetention = 300 * time.Millisecond
	q := queue.New(srv.Client(), name, queue.WithConfig(c))
	s := newSession(t)
	enqueue(t, q, "old")
	m := claim(t, q, s, 5*time.Second)
	if err := m.Dead(ctx, "bad input"); err != nil {
		t.Fatal(err)
	}
	if n, err := q.PurgeDead(ctx); err != nil || n != 0 {
		t.Fatalf("PurgeDead of a fresh dead letter: %d, %v; want 0", n, err)
	}
	dl, err := q.DeadLetter(ctx, m.ID)
	if err != nil || dl.Reason != "bad input" {
		t.Fatalf("dead letter %+v, %v", dl, err)
	}
	waitFor(t, 10*time.Second, "the dead letter to age past the retention and be purged", func() bool {
		n, err := q.PurgeDead(ctx)
		return err == nil && n == 1
	})
	if _, err := q.DeadLetter(ctx, m.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("purged dead letter: %v, want ErrNotFound", err)
	}
	if k := keysUnder(t, name); len(k) != 0 {
		t.Fatalf("purge left keys: %v", k)
	}
}
