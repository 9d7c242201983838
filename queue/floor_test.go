package queue_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// readyKeys returns the queue's live ready entries, in line order.
func readyKeys(t *testing.T, name string) []string {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), "coord/queue/"+name+"/r/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// floorOf returns the entry key the queue's floor of part ("r" or "t")
// holds, "" if none.
func floorOf(t *testing.T, name, part string) string {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), "coord/queue/"+name+"/floor/"+part)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return strings.TrimSuffix(string(resp.Kvs[0].Value), "\x00")
}

// fillQueue enqueues n messages tag-0000... in batches, from q's client.
func fillQueue(t *testing.T, q *queue.Queue, tag string, n int) {
	t.Helper()
	for i := 0; i < n; i += queue.MaxBatch {
		var es []queue.Entry
		for j := i; j < min(n, i+queue.MaxBatch); j++ {
			es = append(es, queue.Entry{Payload: []byte(fmt.Sprintf("%s-%04d", tag, j))})
		}
		if _, err := q.EnqueueBatch(ctxT(t, 5*time.Second), es); err != nil {
			t.Fatal(err)
		}
	}
}

// take claims and acks one message, returning its payload.
func take(t *testing.T, q *queue.Queue, s *session.Session) string {
	t.Helper()
	m := claim(t, q, s, 5*time.Second)
	if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	return string(m.Payload)
}

// TestFloorFollowsTheHead: as a queue is consumed (and etcd does not
// compact, so every consumed message's entry stays in its index), the
// floor that head reads and claim compares begin at follows the head
// within a few raises, and is never past a live message. Without it every
// claim's reads would visit every entry consumed since the last
// compaction.
func TestFloorFollowsTheHead(t *testing.T) {
	t.Parallel()
	name := qname(t, "floor-follows")
	q := queue.New(srv.Client(), name)
	fillQueue(t, q, "m", 1000)
	line := readyKeys(t, name)
	if len(line) != 1000 {
		t.Fatalf("%d ready entries, want 1000", len(line))
	}
	s := newSession(t)
	done := 0
	for done < 900 {
		ms, err := q.ClaimN(ctxT(t, 5*time.Second), s, 16)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if err := m.Ack(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		done += len(ms)
	}
	f := floorOf(t, name, "r")
	if f == "" {
		t.Fatalf("no floor after %d claims", done)
	}
	head := readyKeys(t, name)[0]
	if f > head {
		t.Fatalf("floor %q is past the head %q", f, head)
	}
	// Claims raise it every 32 messages, to their view's head: it trails
	// the head by at most a raise and a batch or two.
	if behind := done - indexOf(line, f); behind > 32+3*16 {
		t.Fatalf("floor %d messages behind the head after %d claims, want at most %d", behind, done, 32+3*16)
	}
}

func indexOf(line []string, k string) int {
	for i, l := range line {
		if l >= k {
			return i
		}
	}
	return len(line)
}

// TestFloorNeverHidesAMessage puts messages back below a raised floor in
// every way a queue does, from other processes than the consumer's: a
// claim whose session ends, a re-driven dead letter, a producer that
// first writes after the floor was raised, and a message of a better
// priority. Each is claimed in its place in line: first.
func TestFloorNeverHidesAMessage(t *testing.T) {
	t.Parallel()
	name := qname(t, "floor-hides")
	producer := queue.New(etcdtest.NewTestClient(t, srv.Endpoints()), name)
	fillQueue(t, producer, "m", 400)
	line := readyKeys(t, name)
	q := queue.New(srv.Client(), name)
	s := newSession(t)

	// A consumer of its own process claims the head, then dies while the
	// others consume far past it.
	dcli := etcdtest.NewTestClient(t, srv.Endpoints())
	ds, err := session.New(ctxT(t, 10*time.Second), dcli)
	if err != nil {
		t.Fatal(err)
	}
	dm := claim(t, queue.New(dcli, name), ds, 5*time.Second)
	if string(dm.Payload) != "m-0000" {
		t.Fatalf("first claim %q, want m-0000", dm.Payload)
	}
	for i := 1; i <= 100; i++ {
		if got, want := take(t, q, s), fmt.Sprintf("m-%04d", i); got != want {
			t.Fatalf("claimed %q, want %q", got, want)
		}
	}
	if f := floorOf(t, name, "r"); f <= line[0] {
		t.Fatalf("the floor (%q) was not raised past m-0000", f)
	}
	ds.Close() // its claim goes; a watching process puts m-0000 back
	waitFor(t, 10*time.Second, "m-0000 back in line", func() bool { return stats(t, q).Claimed == 0 })
	if got := take(t, q, s); got != "m-0000" {
		t.Fatalf("claimed %q after its claim died, want m-0000 (hidden below the floor?)", got)
	}

	// A dead letter re-driven goes back to its old place: first.
	m := claim(t, q, s, 5*time.Second)
	if string(m.Payload) != "m-0101" {
		t.Fatalf("claimed %q, want m-0101", m.Payload)
	}
	if err := m.Dead(ctxT(t, 5*time.Second), "test"); err != nil {
		t.Fatal(err)
	}
	for i := 102; i <= 200; i++ {
		if got, want := take(t, q, s), fmt.Sprintf("m-%04d", i); got != want {
			t.Fatalf("claimed %q, want %q", got, want)
		}
	}
	if f := floorOf(t, name, "r"); f <= line[101] {
		t.Fatalf("the floor (%q) was not raised past m-0101", f)
	}
	if err := producer.Redrive(ctxT(t, 5*time.Second), m.ID); err != nil {
		t.Fatal(err)
	}
	if got := take(t, q, s); got != "m-0101" {
		t.Fatalf("claimed %q after a re-drive, want m-0101", got)
	}

	// A producer whose process has not seen the floor yet, with a better
	// priority: first. And one that has, after more raises: first again.
	late := queue.New(etcdtest.NewTestClient(t, srv.Endpoints()), name)
	enqueue(t, late, "urgent-1", queue.WithPriority(-1))
	if got := take(t, q, s); got != "urgent-1" {
		t.Fatalf("claimed %q, want urgent-1", got)
	}
	for i := 201; i <= 300; i++ {
		if got, want := take(t, q, s), fmt.Sprintf("m-%04d", i); got != want {
			t.Fatalf("claimed %q, want %q", got, want)
		}
	}
	enqueue(t, late, "urgent-2", queue.WithPriority(-1))
	if got := take(t, q, s); got != "urgent-2" {
		t.Fatalf("claimed %q, want urgent-2", got)
	}
	for i := 301; i < 400; i++ {
		if got, want := take(t, q, s), fmt.Sprintf("m-%04d", i); got != want {
			t.Fatalf("claimed %q, want %q", got, want)
		}
	}
	notClaimable(t, q, s, 200*time.Millisecond)
}

// TestDelayedFloor: the delayed range's floor follows its due messages as
// they are claimed, and a Nack or a delayed Enqueue below it (its floor
// raised by a process whose clock runs an hour ahead: with nothing due, a
// claim raises it to its own now) lowers it, so their messages are
// claimed when due, not hidden.
func TestDelayedFloor(t *testing.T) {
	t.Parallel()
	name := qname(t, "floor-delayed")
	q := queue.New(srv.Client(), name)
	for i := 0; i < 300; i += queue.MaxBatch {
		var es []queue.Entry
		for j := i; j < min(300, i+queue.MaxBatch); j++ {
			es = append(es, queue.Entry{Payload: []byte(fmt.Sprintf("d-%04d", j)), Options: []queue.EnqueueOption{queue.WithDelay(time.Millisecond)}})
		}
		if _, err := q.EnqueueBatch(ctxT(t, 5*time.Second), es); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), "coord/queue/"+name+"/t/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || len(resp.Kvs) != 300 {
		t.Fatalf("%d delayed entries, %v; want 300", len(resp.Kvs), err)
	}
	var line []string
	for _, kv := range resp.Kvs {
		line = append(line, string(kv.Key))
	}
	s := newSession(t)
	for range 250 {
		take(t, q, s)
	}
	f := floorOf(t, name, "t")
	if f == "" || f > line[250] {
		t.Fatalf("delayed floor %q: want one at or below the next due entry %q", f, line[250])
	}
	if behind := 250 - indexOf(line, f); behind > 32+16 {
		t.Fatalf("delayed floor %d messages behind the head after 250 claims, want at most %d", behind, 32+16)
	}
	for range 50 {
		take(t, q, s)
	}

	ahead := func() {
		t.Helper()
		hour := fmt.Sprintf("%016x", time.Now().Add(time.Hour).UnixNano())
		if _, err := srv.Client().Put(ctxT(t, 5*time.Second), "coord/queue/"+name+"/floor/t", "coord/queue/"+name+"/t/"+hour+"\x00"); err != nil {
			t.Fatal(err)
		}
	}
	// A Nack, from another process, below a floor an hour ahead.
	other := queue.New(etcdtest.NewTestClient(t, srv.Endpoints()), name)
	enqueue(t, q, "n")
	s2 := newSession(t)
	m := claim(t, other, s2, 5*time.Second)
	ahead()
	// This process reads the head, and so learns of the floor, before the
	// Nack: its next read begins there.
	notClaimable(t, q, s, 100*time.Millisecond)
	if err := m.Nack(ctxT(t, 5*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	if got := string(claim(t, q, s, 5*time.Second).Payload); got != "n" {
		t.Fatalf("claimed %q, want the nacked n", got)
	}
	// A delayed Enqueue, from a third process, below it.
	ahead()
	notClaimable(t, q, s, 100*time.Millisecond)
	third := queue.New(etcdtest.NewTestClient(t, srv.Endpoints()), name)
	due := time.Now().Add(time.Millisecond)
	if _, err := third.Enqueue(ctxT(t, 5*time.Second), []byte("e"), queue.WithDelay(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	// Due by the time this process next claims: its head read must find
	// it (the process's watch hands over only what falls due while a
	// consumer waits).
	for time.Now().Before(due.Add(10 * time.Millisecond)) {
		time.Sleep(time.Millisecond) // waiting for a time to pass, not for an event
	}
	if got := take(t, q, s); got != "e" {
		t.Fatalf("claimed %q, want the delayed e", got)
	}
}
