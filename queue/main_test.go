package queue_test

import (
	"context"
	"errors"
	"fmt"
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

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

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

// keysUnder returns the queue's keys but its stored settings (which, like
// a semaphore's capacity, stay with the queue).
func keysUnder(t *testing.T, name string) []string {
	t.Helper()
	prefix := "coord/queue/" + name + "/"
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		// The settings and the ready line's floor are the queue's own,
		// one key each however long the queue grew.
		if k := string(kv.Key); k != prefix+"config" && !strings.HasPrefix(k, prefix+"floor/") {
			out = append(out, string(kv.Key))
		}
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

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// waitFor polls cond until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}
