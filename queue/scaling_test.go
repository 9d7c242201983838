package queue_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
)

// claimCost measures, on a counted client of its own, the RPCs and bytes
// read of 20 claim+ack rounds with inFlight other messages claimed (and
// held, with 16 KiB payloads) by another process.
func claimCost(t *testing.T, inFlight int) (rpcs, bytes int64) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	name := qname(t, fmt.Sprintf("cost-%d", inFlight))
	producer := queue.New(srv.Client(), name)
	big := make([]byte, 16<<10)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() { enqueue(t, producer, string(big), queue.WithPriority(-1)) })
	}
	wg.Wait()
	holder := newSession(t)
	for range inFlight {
		claim(t, producer, holder, 5*time.Second)
	}
	for i := range 20 {
		enqueue(t, producer, fmt.Sprint(i))
	}
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.New(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	q := queue.New(cli, name)
	c.Reset()
	for range 20 {
		m := claim(t, q, s, 5*time.Second)
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return c.Total("Txn", "Range", "DeleteRange", "Put"), c.Bytes()
}

// Claim+Ack costs the same RPCs and reads no more with 300 claims in
// flight than with none: claimed messages leave the ready range, and no
// read, compare or watch ever touches a payload it does not return (a
// Claim used to page through every claimed message, reading theirs).
func TestClaimCostDoesNotGrowWithClaimsInFlight(t *testing.T) {
	t.Parallel()
	r0, b0 := claimCost(t, 0)
	r1, b1 := claimCost(t, 300)
	t.Logf("0 in flight: %d RPCs, %d bytes; 300 in flight (16 KiB payloads): %d RPCs, %d bytes (20 claim+ack)", r0, b0, r1, b1)
	if r1 > r0+1 || b1 > b0+b0/2 {
		t.Fatalf("20 claim+ack with 300 in flight: %d RPCs, %d bytes; with none: %d, %d", r1, b1, r0, b0)
	}
	if r0 > 42 {
		t.Fatalf("20 claim+ack cost %d RPCs, want about 2 each", r0)
	}
}

// A new message wakes one idle consumer of a process, which claims it: a
// message costs the process the same Txns with 8 idle consumers as with
// one (every idle consumer used to wake and race for it).
func TestIdleConsumersDoNotMultiplyTxns(t *testing.T) {
	t.Parallel()
	cost := func(idle int) int64 {
		ctx := ctxT(t, 60*time.Second)
		name := qname(t, fmt.Sprintf("idle-%d", idle))
		c := etcdtest.NewCounter()
		cli, err := srv.NewClient(etcdtest.WithCounter(c))
		if err != nil {
			t.Fatal(err)
		}
		s, err := session.New(ctx, cli)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		acked := make(chan struct{}, idle)
		for range idle {
			q := queue.New(cli, name)
			go func() {
				for {
					m, err := q.Claim(ctx, s)
					if err != nil {
						return
					}
					if m.Ack(ctx) == nil {
						acked <- struct{}{}
					}
				}
			}()
		}
		producer := queue.New(srv.Client(), name)
		// Let every consumer reach its wait.
		eventually(t, 5*time.Second, "consumers waiting", func() bool { return c.Get("Watch.Create") >= 1 })
		time.Sleep(200 * time.Millisecond) // settling, not synchronization: nothing is counted yet
		c.Reset()
		const msgs = 20
		for i := range msgs {
			enqueue(t, producer, fmt.Sprint(i))
			select {
			case <-acked:
			case <-time.After(10 * time.Second):
				t.Fatal("message not taken within 10s")
			}
		}
		return c.Get("Txn")
	}
	one, eight := cost(1), cost(8)
	t.Logf("Txns for 20 messages: %d with 1 idle consumer, %d with 8", one, eight)
	if float64(eight) > 1.5*float64(one) {
		t.Fatalf("8 idle consumers made %d Txns for 20 messages, 1 made %d", eight, one)
	}
}

// etcd visits every key of a range it reads, to count them, whatever the
// limit: a head read of the whole ready range would cost the server the
// whole backlog on every claim. Head reads end at a horizon instead, placed
// from what the reads show: only a process's first read covers the whole
// backlog, and none ever again while the queue's head keeps moving.
func TestHeadReadsDoNotCoverTheBacklog(t *testing.T) {
	t.Parallel()
	const backlog, claims = 3000, 600
	q := queue.New(srv.Client(), qname(t, "horizon"))
	entries := make([]queue.Entry, queue.MaxBatch)
	for i := range entries {
		entries[i] = queue.Entry{Payload: []byte("x")}
	}
	for range backlog / len(entries) {
		if _, err := q.EnqueueBatch(ctxT(t, 5*time.Second), entries); err != nil {
			t.Fatal(err)
		}
	}
	s := newSession(t)
	for range claims {
		m := claim(t, q, s, 5*time.Second)
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	reads, wide := queue.HeadReads(q)
	// The first read finds the queue long and places the horizon; the
	// first read past each placement may hold up to twice HorizonKeys
	// before the next placement is made nearer.
	if wide > 2 {
		t.Fatalf("%d of %d head reads covered more than %d ready messages, want at most 2", wide, reads, 2*queue.HorizonKeys)
	}
	if reads < claims {
		t.Fatalf("%d head reads for %d claims and acks: the test did not see them", reads, claims)
	}
}

// The horizon changes only what a head read covers, never which message
// is the head: a lone consumer still gets strict priority and FIFO order
// when a better message arrives before the horizon, when the head's
// priority runs dry and a worse one's messages lie past it, and past a
// pause in enqueues longer than the horizon reaches.
func TestHorizonNeverHidesTheHead(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "horizon-order"))
	var want []string
	batch := func(prio, n int, tag string) {
		t.Helper()
		for i := 0; i < n; i += queue.MaxBatch {
			var es []queue.Entry
			for j := i; j < min(n, i+queue.MaxBatch); j++ {
				es = append(es, queue.Entry{Payload: []byte(fmt.Sprintf("%s-%04d", tag, j)), Options: []queue.EnqueueOption{queue.WithPriority(prio)}})
			}
			if _, err := q.EnqueueBatch(ctxT(t, 5*time.Second), es); err != nil {
				t.Fatal(err)
			}
		}
	}
	batch(5, 700, "a")
	// Enqueue times a pause apart, wider than the horizon learns to reach
	// over this backlog: the pause is the data, not a wait for anything.
	time.Sleep(300 * time.Millisecond)
	batch(5, 100, "b")
	for i := range 700 {
		want = append(want, fmt.Sprintf("a-%04d", i))
	}
	for i := range 100 {
		want = append(want, fmt.Sprintf("b-%04d", i))
	}
	s := newSession(t)
	var got []string
	take := func() string {
		t.Helper()
		m := claim(t, q, s, 5*time.Second)
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		return string(m.Payload)
	}
	for range 300 {
		got = append(got, take())
	}
	// A better message, before the horizon: next.
	enqueue(t, q, "urgent", queue.WithPriority(0))
	if m := take(); m != "urgent" {
		t.Fatalf("claimed %q after a priority 0 enqueue, want urgent", m)
	}
	// Worse ones, past it: after every priority 5 message.
	batch(9, 40, "z")
	for i := range 40 {
		want = append(want, fmt.Sprintf("z-%04d", i))
	}
	for len(got) < len(want) {
		got = append(got, take())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("claim %d got %q, want %q (order broken around the horizon)", i, got[i], want[i])
		}
	}
	notClaimable(t, q, s, 300*time.Millisecond)
}
