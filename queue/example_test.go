package queue_test

import (
	"context"
	"fmt"
	"log"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
)

// A producer enqueues without a session; a consumer claims under its
// session and acks when the work is done. Lower priorities go first.
func Example() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()

	q := queue.New(srv.Client(), "emails")
	q.Enqueue(ctx, []byte("newsletter"), queue.WithPriority(10))
	q.Enqueue(ctx, []byte("password reset"), queue.WithPriority(-1))

	s, err := session.New(ctx, srv.Client())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		m, err := q.Claim(ctx, s)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("send %s (attempt %d)\n", m.Payload, m.Attempt)
		if err := m.Ack(ctx); err != nil {
			log.Fatal(err) // queue.ErrClaimLost: another consumer may send it again
		}
	}
	// Output:
	// send password reset (attempt 1)
	// send newsletter (attempt 1)
}

// A message that keeps failing ends in the dead-letter list, where it can
// be inspected and re-driven once the bug is fixed.
func ExampleQueue_Redrive() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	s, err := session.New(ctx, srv.Client())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	q := queue.New(srv.Client(), "invoices", queue.WithMaxAttempts(2))
	id, _ := q.Enqueue(ctx, []byte("invoice 7"))
	for range 2 {
		m, _ := q.Claim(ctx, s)
		m.Nack(ctx, 0) // the handler failed
	}
	dead, _ := q.DeadLetters(ctx)
	fmt.Printf("dead: %s after %d attempts\n", dead[0].Payload, dead[0].Attempts)

	q.Redrive(ctx, id)
	m, _ := q.Claim(ctx, s)
	fmt.Printf("re-driven: %s (attempt %d)\n", m.Payload, m.Attempt)
	m.Ack(ctx)
	// Output:
	// dead: invoice 7 after 2 attempts
	// re-driven: invoice 7 (attempt 1)
}
