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
// whole backlog on every claim. Head reads end at a horizon instead, and
// only the reads that place it again (once per HorizonKeys claims or so)
// cover more.
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
	// The first read finds the queue long, the second places the horizon;
	// then one more pair per HorizonKeys-odd claims.
	if most := 2 * (2 + claims/(queue.HorizonKeys/2)); wide > int64(most) {
		t.Fatalf("%d of %d head reads covered more than %d ready messages, want at most %d", wide, reads, queue.HorizonKeys, most)
	}
	if reads < claims {
		t.Fatalf("%d head reads for %d claims and acks: the test did not see them", reads, claims)
	}
}
