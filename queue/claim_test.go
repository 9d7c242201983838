package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestBlockedClaimWakesOnEnqueue(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "wake"))
	s := newSession(t)
	got := make(chan *queue.Message, 1)
	errc := make(chan error, 1)
	go func() {
		m, err := q.Claim(ctxT(t, 10*time.Second), s)
		errc <- err
		got <- m
	}()
	// The consumer is blocked: the queue is empty.
	select {
	case err := <-errc:
		t.Fatalf("Claim returned on an empty queue: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	enqueue(t, q, "hello")
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
		if m := <-got; string(m.Payload) != "hello" {
			t.Fatalf("payload %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Claim did not see the new message within 5s")
	}
}

func TestAckAfterLostClaim(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "lost"))
	s1, s2 := newSession(t), newSession(t)
	id := enqueue(t, q, "x")
	m1 := claim(t, q, s1, 5*time.Second)
	done := m1.Done()

	// s2 waits: the only message is claimed.
	got := make(chan *queue.Message, 1)
	errc := make(chan error, 1)
	go func() {
		m, err := q.Claim(ctxT(t, 15*time.Second), s2)
		errc <- err
		got <- m
	}()
	if _, err := srv.Client().Revoke(ctxT(t, 5*time.Second), s1.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close within 5s of the session's lease being revoked")
	}
	var m2 *queue.Message
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
		m2 = <-got
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting consumer did not get the released message within 5s")
	}
	if m2.ID != id || m2.Attempt != 2 {
		t.Fatalf("redelivered %s attempt %d, want %s attempt 2", m2.ID, m2.Attempt, id)
	}
	if m2.Token() <= m1.Token() {
		t.Fatalf("token %d not above the lost claim's %d", m2.Token(), m1.Token())
	}
	// IsOwner guards the consumer's own writes: only the live claim's pass.
	for _, c := range []struct {
		m    *queue.Message
		want bool
	}{{m1, false}, {m2, true}} {
		resp, err := srv.Client().Txn(ctxT(t, 5*time.Second)).If(c.m.IsOwner()).Commit()
		if err != nil || resp.Succeeded != c.want {
			t.Fatalf("Txn guarded by IsOwner of attempt %d: succeeded %v, %v; want %v", c.m.Attempt, resp.Succeeded, err, c.want)
		}
	}
	if err := m1.Ack(ctxT(t, 5*time.Second)); !errors.Is(err, queue.ErrClaimLost) {
		t.Fatalf("Ack of a lost claim: %v, want ErrClaimLost", err)
	}
	if err := m1.Nack(ctxT(t, 5*time.Second), 0); !errors.Is(err, queue.ErrFinished) {
		t.Fatalf("Nack after the lost Ack: %v, want ErrFinished", err)
	}
	// The lost claim's Ack changed nothing: the message is still with s2.
	if st := stats(t, q); st.Claimed != 1 {
		t.Fatalf("stats %+v, want it still claimed by the second consumer", st)
	}
	if err := m2.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := m2.Ack(ctxT(t, 5*time.Second)); !errors.Is(err, queue.ErrFinished) {
		t.Fatalf("second Ack: %v, want ErrFinished", err)
	}
	select {
	case <-m2.Done():
	default:
		t.Fatal("Done of an acked message is open")
	}
}

func TestCancelledClaimLeavesNothing(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "cancel"))
	s := newSession(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := q.Claim(ctx, s)
		errc <- err
	}()
	time.AfterFunc(200*time.Millisecond, cancel)
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Claim: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled Claim did not return within 5s")
	}
	if k := keysUnder(t, qname(t, "cancel")); len(k) != 0 {
		t.Fatalf("cancelled Claim left keys: %v", k)
	}
	// A Claim waiting when its session ends returns the session's error.
	s2 := newSession(t)
	go func() {
		_, err := q.Claim(ctxT(t, 15*time.Second), s2)
		errc <- err
	}()
	time.AfterFunc(200*time.Millisecond, func() { s2.Close() })
	select {
	case err := <-errc:
		if !errors.Is(err, session.ErrClosed) {
			t.Fatalf("Claim: %v, want session.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Claim did not return within 5s of its session closing")
	}
}

// The acceptance test: 1,000 messages, 4 consumers, one of which
// has its session revoked while it holds claims. Every message is acked
// exactly once, none is lost, and only messages whose claim was lost are
// delivered twice.
func TestThousandMessagesFourConsumersOneDies(t *testing.T) {
	t.Parallel()
	const total, consumers, held = 1000, 4, 5
	q := queue.New(srv.Client(), qname(t, "thousand"))
	ctx := ctxT(t, 150*time.Second) // generous: 2,000 Txns on a loaded 2-core machine under -race

	var wg sync.WaitGroup
	errs := make(chan error, total)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := q.Enqueue(ctx, []byte(fmt.Sprint(i))); err != nil {
				errs <- err
			}
		}()
		if i%50 == 49 {
			wg.Wait()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acked := map[string]int{}     // payload -> successful acks
	delivered := map[string]int{} // payload -> deliveries
	lostIDs := map[string]bool{}  // payloads whose claim was lost
	record := func(m *queue.Message, ackErr error) {
		mu.Lock()
		defer mu.Unlock()
		if ackErr == nil {
			acked[string(m.Payload)]++
		}
	}
	deliver := func(m *queue.Message) {
		mu.Lock()
		delivered[string(m.Payload)]++
		mu.Unlock()
	}
	finished := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == total
	}

	sessions := make([]*session.Session, consumers)
	for i := range sessions {
		sessions[i] = newSession(t)
	}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var cwg sync.WaitGroup
	fail := make(chan error, consumers)
	for c := range consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			s := sessions[c]
			for n := 0; ; n++ {
				if c == 0 && n == 10 {
					// The victim claims a few messages and dies with them.
					var mine []*queue.Message
					for range held {
						m, err := q.Claim(cctx, s)
						if err != nil {
							fail <- err
							return
						}
						deliver(m)
						mine = append(mine, m)
					}
					if _, err := srv.Client().Revoke(ctx, s.Lease()); err != nil {
						fail <- err
						return
					}
					for _, m := range mine {
						mu.Lock()
						lostIDs[string(m.Payload)] = true
						mu.Unlock()
						err := m.Ack(ctx)
						if !errors.Is(err, queue.ErrClaimLost) {
							fail <- fmt.Errorf("Ack after revoke: %v, want ErrClaimLost", err)
							return
						}
						record(m, err)
					}
					return
				}
				m, err := q.Claim(cctx, s)
				if err != nil {
					if cctx.Err() == nil {
						fail <- err
					}
					return
				}
				deliver(m)
				err = m.Ack(ctx)
				if err != nil {
					fail <- fmt.Errorf("ack %s: %w", m.Payload, err)
					return
				}
				record(m, nil)
				if finished() {
					stop()
				}
			}
		}()
	}
	cwg.Wait()
	close(fail)
	for err := range fail {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lostIDs) != held {
		t.Fatalf("victim lost %d claims, want %d", len(lostIDs), held)
	}
	for i := range total {
		p := fmt.Sprint(i)
		if acked[p] != 1 {
			t.Errorf("message %s acked %d times, want exactly once", p, acked[p])
		}
		want := 1
		if lostIDs[p] {
			want = 2
		}
		if delivered[p] != want {
			t.Errorf("message %s delivered %d times, want %d (claim lost: %v)", p, delivered[p], want, lostIDs[p])
		}
	}
	if n, err := q.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len %d, %v after every message was acked", n, err)
	}
}

// A head longer than one read's window, all claimed, must not hide the
// free messages behind it; and when its holder dies, all of it comes back.
func TestClaimPastAClaimedHead(t *testing.T) {
	t.Parallel()
	const total, held = 80, 75
	q := queue.New(srv.Client(), qname(t, "deep"))
	for i := range total {
		enqueue(t, q, fmt.Sprintf("%03d", i))
	}
	a := newSession(t)
	for i := range held {
		if m := claim(t, q, a, 5*time.Second); string(m.Payload) != fmt.Sprintf("%03d", i) {
			t.Fatalf("claim %d = %s, want FIFO", i, m.Payload)
		}
	}
	// A second consumer, with a Queue value of its own.
	qb := queue.New(srv.Client(), qname(t, "deep"))
	b := newSession(t)
	for i := held; i < total; i++ {
		m := claim(t, qb, b, 5*time.Second)
		if string(m.Payload) != fmt.Sprintf("%03d", i) {
			t.Fatalf("claim past the held head = %s, want %03d", m.Payload, i)
		}
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	notClaimable(t, qb, b, 300*time.Millisecond)
	if st := stats(t, q); st != (queue.Stats{Claimed: held}) {
		t.Fatalf("stats %+v, want %d claimed", st, held)
	}
	a.Close()
	for i := range held {
		m := claim(t, qb, b, 5*time.Second)
		if string(m.Payload) != fmt.Sprintf("%03d", i) || m.Attempt != 2 {
			t.Fatalf("after the holder died, claim %d = %s attempt %d", i, m.Payload, m.Attempt)
		}
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if k := keysUnder(t, qname(t, "deep")); len(k) != 0 {
		t.Fatalf("keys left: %v", k)
	}
}

// An Ack reads the head for the consumer's next Claim. That view must
// never make the Claim skip a better-priority message that arrived, or
// became due, after the Ack.
func TestClaimAfterAckSeesNewerBetterMessages(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "kept-view"))
	producer := queue.New(srv.Client(), qname(t, "kept-view"))
	s := newSession(t)
	enqueue(t, q, "a", queue.WithPriority(5))
	enqueue(t, q, "b", queue.WithPriority(5))
	enqueue(t, q, "due-soon", queue.WithPriority(-1), queue.WithDelay(4*time.Second))
	// (Due late enough that a loaded machine still claims "urgent" before
	// it: a claim after it is due rightly takes it, its priority is better.)

	ackFirst := func(want string) {
		t.Helper()
		m := claim(t, q, s, 5*time.Second)
		if string(m.Payload) != want {
			t.Fatalf("claimed %q, want %q", m.Payload, want)
		}
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	ackFirst("a") // the Ack's view now offers "b"
	enqueue(t, producer, "urgent", queue.WithPriority(0))
	ackFirst("urgent") // the Ack's view offers "b"; "due-soon" is not due yet
	deadline := time.Now().Add(10 * time.Second)
	for stats(t, q).Delayed != 0 {
		if time.Now().After(deadline) {
			t.Fatal("delayed message not due within 10s")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	ackFirst("due-soon")
	ackFirst("b")
}

// An Ack whose answer is lost may have been applied; retrying it must
// then report success, not ErrClaimLost.
func TestAckRetryAfterLostAnswer(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	name := qname(t, "ack-retry")
	q := queue.New(cli, name)
	// A claim is its session's: its Ack goes through the session's client,
	// so the session is the one behind the proxy (its 15 s TTL rides out a
	// 1 s delay).
	s, err := session.New(ctxT(t, 10*time.Second), cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	enqueue(t, q, "x")
	m := claim(t, q, s, 5*time.Second)

	p.Delay(time.Second)
	if err := m.Ack(ctxT(t, 200*time.Millisecond)); err == nil {
		t.Fatal("Ack through a 1s delay returned within 200ms")
	}
	// The delayed Ack still reaches the server and applies.
	deadline := time.Now().Add(10 * time.Second)
	for len(keysUnder(t, name)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the delayed Ack never applied: %v", keysUnder(t, name))
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	p.Restore()
	if err := m.Ack(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("retried Ack of an applied Ack: %v, want nil", err)
	}
}

// A Claim waiting through a dropped connection still gets the message.
func TestClaimSurvivesConnectionReset(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	name := qname(t, "reset")
	q := queue.New(cli, name)
	s := newSession(t)
	got := make(chan error, 1)
	go func() {
		m, err := q.Claim(ctxT(t, 20*time.Second), s)
		if err == nil && string(m.Payload) != "after" {
			err = fmt.Errorf("payload %q", m.Payload)
		}
		got <- err
	}()
	// Let the Claim reach its wait, then cut its connection.
	select {
	case err := <-got:
		t.Fatalf("Claim returned on an empty queue: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	p.Reset()
	enqueue(t, queue.New(srv.Client(), name), "after")
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Claim did not get the message within 10s of a connection reset")
	}
}

// An idle consumer wakes for what can free a message, not for every Ack
// of a busy one; and it does wake when a busy one dies holding messages.
func TestIdleConsumerSleepsThroughAcks(t *testing.T) {
	t.Parallel()
	name := qname(t, "idle")
	busy := queue.New(srv.Client(), name)
	const n = 20
	for i := range n {
		enqueue(t, busy, fmt.Sprint(i))
	}
	sa := newSession(t)
	var held []*queue.Message
	for range n {
		held = append(held, claim(t, busy, sa, 5*time.Second))
	}

	counter := etcdtest.NewCounter()
	cli, err := etcdtest.NewClient(srv.Endpoints(), etcdtest.WithCounter(counter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	idle := queue.New(cli, name)
	sb := newSession(t)
	got := make(chan *queue.Message, 1)
	errc := make(chan error, 1)
	go func() {
		m, err := idle.Claim(ctxT(t, 20*time.Second), sb)
		errc <- err
		got <- m
	}()
	deadline := time.Now().Add(5 * time.Second)
	for counter.Get("Watch.Create") == 0 { // the idle consumer is waiting
		if time.Now().After(deadline) {
			t.Fatal("idle consumer never started waiting")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	before := counter.Total("Txn", "Range")
	for _, m := range held[:n-1] {
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-errc:
		t.Fatalf("idle consumer returned while every message was claimed: %v", err)
	default:
	}
	// Through the Acks, at most the idle consumer's own first read of the
	// head (its watch may be created before it), a second one when the
	// feed started after that read (the dispatcher cannot vouch for what
	// came between), and the dispatcher's sweep for claims that died
	// unwatched (a page read and a batch check, when its feed starts):
	// nothing per Ack.
	if reads := counter.Total("Txn", "Range") - before; reads > 4 {
		t.Errorf("idle consumer made %d reads and Txns through %d Acks, want it asleep through them (%s)", reads, n-1, counter)
	}
	// The busy consumer dies holding the last message: it is freed. The
	// watch delivers events in order, so by the time the idle consumer
	// has it, it has seen every Ack.
	sa.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
		if m := <-got; string(m.Payload) != fmt.Sprint(n-1) || m.Attempt != 2 {
			t.Fatalf("got %q attempt %d, want %d attempt 2", m.Payload, m.Attempt, n-1)
		}
		// Then the repair of the dead claim (a read of its in-flight
		// entry and a Txn) and the claim Txn, and a retry of either on a
		// loaded machine: 8 in all at most, never one per Ack.
		if reads := counter.Total("Txn", "Range") - before; reads > 8 {
			t.Errorf("idle consumer made %d reads and Txns through %d Acks and one release, want it asleep through the Acks", reads, n-1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("idle consumer did not get the dead consumer's message within 5s")
	}
}

// A Claim waiting on a 3-member cluster gets the message after the
// history is compacted and the leader is killed, and a claim made before
// the failover can still be acked after it.
func TestClaimThroughCompactionAndFailover(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCluster(t, 3, etcdtest.WithoutFsync())
	cli, err := c.NewClient(c.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 40*time.Second)
	s, err := session.New(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := queue.New(cli, "failover")
	if _, err := q.Enqueue(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	held, err := q.Claim(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		m, err := q.Claim(ctx, s)
		if err == nil && string(m.Payload) != "after" {
			err = fmt.Errorf("payload %q", m.Payload)
		}
		if err == nil {
			err = m.Ack(ctx)
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Claim returned while the only message was claimed: %v", err)
	case <-time.After(300 * time.Millisecond): // it is waiting
	}
	if err := c.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	c.Kill(c.Leader())
	if _, err := c.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.New(cli, "failover").Enqueue(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("waiting Claim did not get the message within 15s of the failover")
	}
	if err := held.Ack(ctx); err != nil {
		t.Fatalf("Ack of a claim made before the failover: %v", err)
	}
	if n, err := q.Len(ctx); err != nil || n != 0 {
		t.Fatalf("Len %d, %v", n, err)
	}
}

// The claims of a consumer that died come back in the order of their
// messages: a consumer woken by the first to come back must not get a
// later message while an earlier one is still in flight. Put back one by
// one in any order, the line's ready entries would be recreated out of
// order; this checks the revisions they were recreated at.
func TestDeadClaimsComeBackInOrder(t *testing.T) {
	t.Parallel()
	const total = 160
	name := qname(t, "reorder")
	q := queue.New(srv.Client(), name)
	for i := range total {
		enqueue(t, q, fmt.Sprintf("%03d", i))
	}
	a := newSession(t)
	for got := 0; got < total; {
		ms, err := q.ClaimN(ctxT(t, 5*time.Second), a, queue.MaxBatch)
		if err != nil {
			t.Fatal(err)
		}
		got += len(ms)
	}
	a.Close()
	eventually(t, 10*time.Second, "every claim of the closed session back in line", func() bool {
		return stats(t, q) == queue.Stats{Ready: total}
	})
	prefix := "coord/queue/" + name + "/r/"
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != total {
		t.Fatalf("%d ready entries, want %d", len(resp.Kvs), total)
	}
	for i := 1; i < len(resp.Kvs); i++ {
		if resp.Kvs[i].CreateRevision < resp.Kvs[i-1].CreateRevision {
			t.Fatalf("ready entry %d came back at revision %d, before entry %d (revision %d): out of line order",
				i, resp.Kvs[i].CreateRevision, i-1, resp.Kvs[i-1].CreateRevision)
		}
	}
}

// A claim whose session ended while no process followed the queue (its
// own process gone first) is repaired by the next process to claim: its
// dispatcher's sweep finds the message in flight with no claim, and puts
// it back.
func TestClaimThatDiedUnwatchedIsRepaired(t *testing.T) {
	t.Parallel()
	name := qname(t, "unwatched")
	enqueue(t, queue.New(srv.Client(), name), "x")
	cli, err := etcdtest.NewClient(srv.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.New(ctxT(t, 10*time.Second), cli)
	if err != nil {
		t.Fatal(err)
	}
	m := claim(t, queue.New(cli, name), s, 5*time.Second)
	lease := s.Lease()
	// The process goes first (nothing is released), then its lease.
	cli.Close()
	if _, err := srv.Client().Revoke(ctxT(t, 5*time.Second), lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatal(err) // (not found: the closing client's session got there first)
	}
	other, err := etcdtest.NewClient(srv.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	so, err := session.New(ctxT(t, 10*time.Second), other)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { so.Close() })
	got := claim(t, queue.New(other, name), so, 10*time.Second)
	if got.ID != m.ID || got.Attempt != 2 {
		t.Fatalf("claimed %s attempt %d, want %s attempt 2", got.ID, got.Attempt, m.ID)
	}
}
