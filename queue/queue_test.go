package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

// qname gives every test run a queue name of its own, so -count reruns
// never see an earlier run's messages.
func qname(t *testing.T, base string) string {
	type key struct {
		t    *testing.T
		base string
	}
	v, _ := qnames.LoadOrStore(key{t, base}, fmt.Sprintf("%s-%d", base, qseq.Add(1)))
	return v.(string)
}

var (
	qnames sync.Map
	qseq   atomic.Int64
)

func TestMain(m *testing.M) {
	var err error
	srv, err = etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	if benchSrv != nil {
		benchSrv.Close()
	}
	os.Exit(code)
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newSession(t *testing.T) *session.Session {
	t.Helper()
	s, err := session.New(ctxT(t, 10*time.Second), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// keysUnder lists every key the queue called name has in etcd.
func keysUnder(t *testing.T, name string) []string {
	t.Helper()
	prefix := "coord/queue/" + name + "/"
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func enqueue(t *testing.T, q *queue.Queue, payload string, opts ...queue.EnqueueOption) string {
	t.Helper()
	id, err := q.Enqueue(ctxT(t, 5*time.Second), []byte(payload), opts...)
	if err != nil {
		t.Fatalf("Enqueue(%q): %v", payload, err)
	}
	return id
}

func claim(t *testing.T, q *queue.Queue, s *session.Session, d time.Duration) *queue.Message {
	t.Helper()
	m, err := q.Claim(ctxT(t, d), s)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return m
}

// notClaimable asserts that no message can be claimed within d.
func notClaimable(t *testing.T, q *queue.Queue, s *session.Session, d time.Duration) {
	t.Helper()
	m, err := q.Claim(ctxT(t, d), s)
	if err == nil {
		t.Fatalf("claimed %q (attempt %d), want nothing claimable", m.Payload, m.Attempt)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Claim: %v, want context.DeadlineExceeded", err)
	}
}

func stats(t *testing.T, q *queue.Queue) queue.Stats {
	t.Helper()
	st, err := q.Stats(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPriorityAndFIFOWithOneConsumer(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "prio"))
	s := newSession(t)
	type in struct {
		payload string
		prio    int
	}
	ins := []in{{"b1", 5}, {"a1", -3}, {"c1", 1 << 40}, {"b2", 5}, {"z1", 0}, {"a2", -3}, {"b3", 5}, {"z2", 0}, {"m1", -1 << 40}}
	for _, x := range ins {
		enqueue(t, q, x.payload, queue.WithPriority(x.prio))
	}
	want := []string{"m1", "a1", "a2", "z1", "z2", "b1", "b2", "b3", "c1"}
	for i, w := range want {
		m := claim(t, q, s, 5*time.Second)
		if string(m.Payload) != w {
			t.Fatalf("claim %d = %q (priority %d), want %q", i, m.Payload, m.Priority, w)
		}
		if m.Attempt != 1 {
			t.Errorf("%s: attempt %d, want 1", w, m.Attempt)
		}
		if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := q.Len(ctxT(t, 5*time.Second)); err != nil || n != 0 {
		t.Fatalf("Len = %d, %v; want 0", n, err)
	}
	if k := keysUnder(t, qname(t, "prio")); len(k) != 0 {
		t.Fatalf("keys left after every ack: %v", k)
	}
}

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

func TestDelayedNotClaimableEarly(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "delay"))
	s := newSession(t)
	const delay = 2 * time.Second
	start := time.Now()
	enqueue(t, q, "later", queue.WithDelay(delay))
	enqueue(t, q, "now", queue.WithPriority(100))
	if st := stats(t, q); st.Delayed != 1 || st.Ready != 1 {
		t.Fatalf("stats %+v, want 1 delayed and 1 ready", st)
	}
	// The ready message comes first although its priority is worse.
	m := claim(t, q, s, 5*time.Second)
	if string(m.Payload) != "now" {
		t.Fatalf("claimed %q first, want the ready message", m.Payload)
	}
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// A Claim blocked on a queue whose only message is delayed returns
	// it once the delay passes, never before.
	m = claim(t, q, s, 10*time.Second)
	if since := time.Since(start); since < delay {
		t.Fatalf("delayed message claimed after %v, before its delay of %v", since, delay)
	}
	if string(m.Payload) != "later" {
		t.Fatalf("payload %q", m.Payload)
	}
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

func TestNackWithDelay(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "nack"))
	s := newSession(t)
	id := enqueue(t, q, "job")
	m := claim(t, q, s, 5*time.Second)
	if m.ID != id {
		t.Fatalf("id %q, Enqueue said %q", m.ID, id)
	}
	const delay = 2 * time.Second
	nacked := time.Now()
	if err := m.Nack(ctxT(t, 5*time.Second), delay); err != nil {
		t.Fatal(err)
	}
	if err := m.Ack(ctxT(t, 5*time.Second)); !errors.Is(err, queue.ErrFinished) {
		t.Fatalf("Ack after Nack: %v, want ErrFinished", err)
	}
	if st := stats(t, q); st.Delayed != 1 || st.Ready != 0 || st.Claimed != 0 {
		t.Fatalf("stats after Nack %+v, want 1 delayed", st)
	}
	notClaimable(t, q, s, 300*time.Millisecond)
	m2 := claim(t, q, s, 10*time.Second)
	if since := time.Since(nacked); since < delay {
		t.Fatalf("nacked message claimable after %v, before its delay of %v", since, delay)
	}
	if m2.ID != id || m2.Attempt != 2 || string(m2.Payload) != "job" {
		t.Fatalf("redelivered %s attempt %d %q, want %s attempt 2", m2.ID, m2.Attempt, m2.Payload, id)
	}
	// Nack(0) makes it claimable at once.
	if err := m2.Nack(ctxT(t, 5*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	m3 := claim(t, q, s, 5*time.Second)
	if m3.Attempt != 3 {
		t.Fatalf("attempt %d, want 3", m3.Attempt)
	}
	if err := m3.Nack(ctxT(t, time.Second), -time.Second); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("Nack(-1s): %v, want ErrInvalid", err)
	}
	if err := m3.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if k := keysUnder(t, qname(t, "nack")); len(k) != 0 {
		t.Fatalf("keys left: %v", k)
	}
}

func TestDeadLetterAfterMaxAttemptsAndRedrive(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "dlq"), queue.WithMaxAttempts(2))
	s := newSession(t)
	id := enqueue(t, q, "poison", queue.WithPriority(7))
	enqueue(t, q, "fine", queue.WithPriority(8))
	for attempt := 1; attempt <= 2; attempt++ {
		m := claim(t, q, s, 5*time.Second)
		if m.ID != id || m.Attempt != attempt {
			t.Fatalf("claimed %s attempt %d, want %s attempt %d", m.ID, m.Attempt, id, attempt)
		}
		if err := m.Nack(ctxT(t, 5*time.Second), 0); err != nil {
			t.Fatal(err)
		}
	}
	// The second Nack dead-lettered it: the next claim is the other one.
	m := claim(t, q, s, 5*time.Second)
	if string(m.Payload) != "fine" {
		t.Fatalf("claimed %q, want the healthy message", m.Payload)
	}
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, q); st != (queue.Stats{Dead: 1}) {
		t.Fatalf("stats %+v, want only 1 dead", st)
	}
	if n, _ := q.Len(ctxT(t, 5*time.Second)); n != 0 {
		t.Fatalf("Len %d counts dead letters", n)
	}
	dead, err := q.DeadLetters(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].ID != id || string(dead[0].Payload) != "poison" || dead[0].Attempts != 2 || dead[0].Priority != 7 {
		t.Fatalf("dead letters %+v", dead)
	}
	if dl, err := q.DeadLetter(ctxT(t, 5*time.Second), id); err != nil || string(dl.Payload) != "poison" {
		t.Fatalf("DeadLetter(%s) = %+v, %v", id, dl, err)
	}
	if err := q.Redrive(ctxT(t, 5*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if err := q.Redrive(ctxT(t, 5*time.Second), id); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("second Redrive: %v, want ErrNotFound", err)
	}
	m = claim(t, q, s, 5*time.Second)
	if m.ID != id || m.Attempt != 1 || string(m.Payload) != "poison" || m.Priority != 7 {
		t.Fatalf("re-driven message %s attempt %d %q prio %d", m.ID, m.Attempt, m.Payload, m.Priority)
	}
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if k := keysUnder(t, qname(t, "dlq")); len(k) != 0 {
		t.Fatalf("keys left: %v", k)
	}
}

// A consumer that dies holding a message for the last allowed time does
// not get to Nack it: the next Claim dead-letters it instead of handing
// it out again.
func TestDeadLetterWhenConsumersKeepDying(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "dlq-crash"), queue.WithMaxAttempts(1))
	id := enqueue(t, q, "crashes-workers")
	s1 := newSession(t)
	if m := claim(t, q, s1, 5*time.Second); m.ID != id {
		t.Fatalf("claimed %s", m.ID)
	}
	s1.Close() // the consumer "crashes": its claim goes with its lease
	s2 := newSession(t)
	notClaimable(t, q, s2, 2*time.Second)
	dead, err := q.DeadLetters(ctxT(t, 5*time.Second))
	if err != nil || len(dead) != 1 || dead[0].ID != id || dead[0].Attempts != 1 {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}
	if err := q.Discard(ctxT(t, 5*time.Second), id); err != nil {
		t.Fatal(err)
	}
	if k := keysUnder(t, qname(t, "dlq-crash")); len(k) != 0 {
		t.Fatalf("keys left: %v", k)
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

func TestPayloadLimits(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	q := queue.New(srv.Client(), qname(t, "big"))
	if _, err := q.Enqueue(ctx, make([]byte, queue.DefaultMaxPayload+1)); !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("oversize payload: %v, want ErrTooLarge", err)
	}
	// A limit raised past the server's own: the server refuses, and the
	// error is still ErrTooLarge.
	loose := queue.New(srv.Client(), qname(t, "big"), queue.WithMaxPayload(4<<20))
	if _, err := loose.Enqueue(ctx, make([]byte, 3<<19+1)); !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("payload over the server's limit: %v, want ErrTooLarge", err)
	}
	if k := keysUnder(t, qname(t, "big")); len(k) != 0 {
		t.Fatalf("rejected payloads left keys: %v", k)
	}
	// The largest accepted payload round-trips, and so does an empty one.
	big := bytes.Repeat([]byte("0123456789abcdef"), queue.DefaultMaxPayload/16)
	s := newSession(t)
	for _, want := range [][]byte{big, nil} {
		if _, err := q.Enqueue(ctx, want); err != nil {
			t.Fatalf("%d-byte payload: %v", len(want), err)
		}
		m := claim(t, q, s, 5*time.Second)
		if !bytes.Equal(m.Payload, want) {
			t.Fatalf("payload of %d bytes came back as %d bytes", len(want), len(m.Payload))
		}
		if err := m.Nack(ctx, 0); err != nil { // re-puts the payload
			t.Fatal(err)
		}
		m = claim(t, q, s, 5*time.Second)
		if !bytes.Equal(m.Payload, want) {
			t.Fatalf("after Nack, payload of %d bytes came back as %d bytes", len(want), len(m.Payload))
		}
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	s := newSession(t)
	for _, name := range []string{"", strings.Repeat("n", 513), "bad\xffname"} {
		q := queue.New(srv.Client(), name)
		if _, err := q.Enqueue(ctx, []byte("x")); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Enqueue on %.10q: %v, want ErrInvalid", name, err)
		}
		if _, err := q.Claim(ctx, s); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Claim on %.10q: %v, want ErrInvalid", name, err)
		}
		if _, err := q.Len(ctx); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Len on %.10q: %v, want ErrInvalid", name, err)
		}
		if _, err := q.DeadLetters(ctx); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("DeadLetters on %.10q: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := queue.New(nil, "x").Enqueue(ctx, nil); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("nil client: %v", err)
	}
	if _, err := queue.New(srv.Client(), qname(t, "x"), queue.WithMaxAttempts(-1)).Len(ctx); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("negative max attempts: %v", err)
	}
	if _, err := queue.New(srv.Client(), qname(t, "x"), queue.WithPrefix("")).Len(ctx); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("empty prefix: %v", err)
	}

	q := queue.New(srv.Client(), qname(t, "bad-input"))
	if _, err := q.Enqueue(ctx, []byte("x"), queue.WithDelay(-time.Second)); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("negative delay: %v", err)
	}
	if _, err := q.Enqueue(ctx, []byte("x"), queue.WithIdempotencyKey("")); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("empty idempotency key: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := q.Enqueue(cancelled, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Enqueue: %v", err)
	}
	if _, err := q.Claim(cancelled, s); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Claim: %v", err)
	}
	if _, err := q.Claim(ctx, nil); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("nil session: %v", err)
	}
	closed := newSession(t)
	closed.Close()
	if _, err := q.Claim(ctx, closed); !errors.Is(err, session.ErrClosed) {
		t.Errorf("closed session: %v", err)
	}
	for _, id := range []string{"", "../r/x", "0000000000000001-zz", strings.Repeat("a", 40)} {
		if err := q.Redrive(ctx, id); !errors.Is(err, queue.ErrInvalid) {
			t.Errorf("Redrive(%q): %v, want ErrInvalid", id, err)
		}
	}
	if err := q.Redrive(ctx, "0000000000000001-0000000000000001"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Redrive of an unknown id: %v, want ErrNotFound", err)
	}
	if _, err := q.DeadLetter(ctx, "0000000000000001-0000000000000001"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("DeadLetter of an unknown id: %v, want ErrNotFound", err)
	}
	if k := keysUnder(t, qname(t, "bad-input")); len(k) != 0 {
		t.Fatalf("bad input left keys: %v", k)
	}
	if k := keysUnder(t, qname(t, "x")); len(k) != 0 {
		t.Fatalf("bad options left keys: %v", k)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "idem"))
	s := newSession(t)
	id1 := enqueue(t, q, "once", queue.WithIdempotencyKey("order/42"))
	id2 := enqueue(t, q, "once", queue.WithIdempotencyKey("order/42"))
	if id1 != id2 {
		t.Fatalf("retried Enqueue made a second message: %s, %s", id1, id2)
	}
	if n, _ := q.Len(ctxT(t, 5*time.Second)); n != 1 {
		t.Fatalf("Len %d, want 1", n)
	}
	m := claim(t, q, s, 5*time.Second)
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if id3 := enqueue(t, q, "again", queue.WithIdempotencyKey("order/42")); id3 == id1 {
		t.Fatal("the key outlived its acked message")
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

func TestStats(t *testing.T) {
	t.Parallel()
	q := queue.New(srv.Client(), qname(t, "stats"), queue.WithMaxAttempts(1))
	s := newSession(t)
	for i := range 4 {
		enqueue(t, q, fmt.Sprint(i))
	}
	enqueue(t, q, "d", queue.WithDelay(time.Hour))
	m := claim(t, q, s, 5*time.Second)
	m2 := claim(t, q, s, 5*time.Second)
	if err := m2.Nack(ctxT(t, 5*time.Second), 0); err != nil { // attempt 1 of 1: dead
		t.Fatal(err)
	}
	want := queue.Stats{Ready: 2, Claimed: 1, Delayed: 1, Dead: 1}
	if st := stats(t, q); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	if n, _ := q.Len(ctxT(t, 5*time.Second)); n != 4 {
		t.Fatalf("Len %d, want 4", n)
	}
	_ = m
}

// The acceptance test: 1,000 messages, 4 consumers, one of which
// has its session revoked while it holds claims. Every message is acked
// exactly once, none is lost, and only messages whose claim was lost are
// delivered twice.
func TestThousandMessagesFourConsumersOneDies(t *testing.T) {
	t.Parallel()
	const total, consumers, held = 1000, 4, 5
	q := queue.New(srv.Client(), qname(t, "thousand"))
	ctx := ctxT(t, 50*time.Second)

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
	enqueue(t, q, "due-soon", queue.WithPriority(-1), queue.WithDelay(1500*time.Millisecond))

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
	deadline := time.Now().Add(5 * time.Second)
	for stats(t, q).Delayed != 0 {
		if time.Now().After(deadline) {
			t.Fatal("delayed message not due within 5s")
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
	s := newSession(t) // on a direct client: only the queue's traffic is delayed
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
		// One read on the release, one claim Txn, and one spare.
		if reads := counter.Total("Txn", "Range") - before; reads > 3 {
			t.Errorf("idle consumer made %d reads and Txns through %d Acks and one release, want it asleep through the Acks", reads, n-1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("idle consumer did not get the dead consumer's message within 5s")
	}
}
