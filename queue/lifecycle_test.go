package queue_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fenceRev reads the mod revision of s's marker key: the fence that moves
// when s cleans up after a request whose outcome it did not learn.
func fenceRev(t *testing.T, s *session.Session) int64 {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), fmt.Sprintf("%ssession/%016x", s.Prefix(), int64(s.Lease())))
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("marker of %x: %v", int64(s.Lease()), err)
	}
	return resp.Kvs[0].ModRevision
}

// Workers sharing one session (the README's advice): a claim that fails
// never touches a sibling's claim. Worker B's claim of a message that
// worker A already holds (from B's stale view) times out; B's cleanup used
// to delete the message's one claim key, A's, so A's Done closed while
// its session lived, another consumer could take the message, and A's Ack
// failed.
func TestFailedClaimNeverTouchesASiblingsClaim(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithTTL(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// B's Queue is on a client of its own: a process's consumers on one
	// client never try what a sibling holds (they share what they claim),
	// so B's stale view reaches etcd only from another client, as it
	// would from a view older than what a process remembers. The claim
	// Txn still goes on the shared session's lease.
	cli2, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli2.Close() })
	name := qname(t, "shared")
	qa, qb := queue.New(cli, name), queue.New(cli2, name)
	enqueue(t, queue.New(srv.Client(), name), "x")
	enqueue(t, queue.New(srv.Client(), name), "m")
	x := claim(t, qb, s, 5*time.Second)
	if err := x.Ack(ctxT(t, 5*time.Second)); err != nil { // B's Ack reads the head: "m"
		t.Fatal(err)
	}
	m := claim(t, qa, s, 5*time.Second) // A takes "m"
	if string(m.Payload) != "m" {
		t.Fatalf("A claimed %q", m.Payload)
	}
	done := m.Done()
	before := fenceRev(t, s)

	p.Delay(time.Second)
	if _, err := qb.Claim(ctxT(t, 300*time.Millisecond), s); err == nil {
		t.Fatal("B's claim through a 1s delay returned within 300ms")
	}
	// B's delayed claim Txn and its cleanup land (the cleanup moves the
	// session's fence); A's claim must not be what the cleanup takes.
	deadline := time.Now().Add(10 * time.Second)
	for fenceRev(t, s) == before {
		select {
		case <-done:
			t.Fatal("a sibling's failed claim ended A's claim")
		case <-time.After(20 * time.Millisecond): // polling a condition, with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatal("B's cleanup did not land within 10s")
		}
	}
	p.Restore()
	select {
	case <-done:
		t.Fatal("a sibling's failed claim ended A's claim")
	default:
	}
	if err := m.Ack(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("A's Ack: %v", err)
	}
	if st := stats(t, qa); st != (queue.Stats{}) {
		t.Fatalf("stats %+v after every message was acked", st)
	}
}

// A claim whose answer arrives after its session stopped being
// trustworthy is never returned: by then the lease may be gone and
// another consumer may have the message.
func TestClaimNeverReturnsAMessageItsSessionCannotVouchFor(t *testing.T) {
	t.Parallel()
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	name := qname(t, "late-grant")
	q := queue.New(cli, name)
	enqueue(t, q, "x")
	id := enqueue(t, q, "m")
	// The Ack of "x" reads the head for the next Claim, which then sends
	// its claim Txn at once, with no read first.
	x := claim(t, q, s, 5*time.Second)
	if err := x.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Every answer now takes 3 s, more than the session's 2 s lease: the
	// claim lands while the lease lives, and its answer arrives after the
	// session has given up on it.
	p.Delay(1500 * time.Millisecond)
	m, err := q.Claim(ctxT(t, 20*time.Second), s)
	if err == nil {
		t.Fatalf("Claim returned %q after its session could no longer vouch for it (session: %v)", m.Payload, s.Err())
	}
	if !errors.Is(err, session.ErrExpired) {
		t.Fatalf("Claim: %v, want session.ErrExpired", err)
	}
	p.Restore()
	// The message is not lost: another consumer gets it.
	other := newSession(t)
	m2 := claim(t, queue.New(srv.Client(), name), other, 15*time.Second)
	if m2.ID != id {
		t.Fatalf("another consumer got %s, want %s", m2.ID, id)
	}
	if err := m2.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// A queue and a session of different roots refuse each other: a consumer
// would otherwise work on another queue than its producers, silently.
func TestClaimRefusesASessionOfAnotherRoot(t *testing.T) {
	t.Parallel()
	s, err := session.New(ctxT(t, 10*time.Second), srv.Client(), session.WithPrefix("app/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	q := queue.New(srv.Client(), qname(t, "roots"))
	if _, err := q.Claim(ctxT(t, 5*time.Second), s); !errors.Is(err, queue.ErrInvalid) {
		t.Fatalf("Claim with a session of another root: %v, want ErrInvalid", err)
	}
	q = queue.New(srv.Client(), qname(t, "roots"), queue.WithPrefix("app/"))
	enqueue(t, q, "x")
	m := claim(t, q, s, 5*time.Second)
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if resp, _ := srv.Client().Get(ctxT(t, 5*time.Second), "app/queue/", clientv3.WithPrefix(), clientv3.WithCountOnly()); resp.Count != 0 {
		t.Fatalf("%d keys left under app/queue/", resp.Count)
	}
}

// A message whose payload was deleted behind the queue's back is
// dead-lettered by the first claim that finds it, instead of staying at
// the head and being claimed forever ahead of the messages behind it.
func TestMessageWithoutPayloadIsDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	name := qname(t, "nopayload")
	q := queue.New(srv.Client(), name)
	broken := enqueue(t, q, "gone")
	enqueue(t, q, "next")
	if _, err := srv.Client().Delete(ctx, "coord/queue/"+name+"/v/"+broken); err != nil {
		t.Fatal(err)
	}
	s := newSession(t)
	m := claim(t, q, s, 10*time.Second)
	if string(m.Payload) != "next" {
		t.Fatalf("claimed %q, want the message behind the broken one", m.Payload)
	}
	dl, err := q.DeadLetter(ctx, broken)
	if err != nil || dl.Reason != queue.ReasonNoPayload {
		t.Fatalf("broken message: %+v, %v; want a dead letter with ReasonNoPayload", dl, err)
	}
}
