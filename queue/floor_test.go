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

// floorOf returns the entry key the queue's floor holds, "" if none.
func floorOf(t *testing.T, name string) string {
	t.Helper()
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), "coord/queue/"+name+"/floor")
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
	f := floorOf(t, name)
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
	if f := floorOf(t, name); f <= line[0] {
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
	if f := floorOf(t, name); f <= line[101] {
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
