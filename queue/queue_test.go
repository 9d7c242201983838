package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
)

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
