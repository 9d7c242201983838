package main

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
)

// syncBuffer is a strings.Builder safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	claimedRe = regexp.MustCompile(`: claimed (\S+) \(attempt (\d+)`)
	doneRe    = regexp.MustCompile(`: (\S+) done \(attempt (\d+)\)$`)
	crashRe   = regexp.MustCompile(`: crashed holding (\S+) \(attempt 1\)$`)
	deadRe    = regexp.MustCompile(`: fragile dead-lettered after 3 attempts$`)
	redriveRe = regexp.MustCompile(`operator: .* re-drove fragile`)
)

// TestAll runs the whole story against a server of the test's own and
// checks it from the output and from the queue left behind.
func TestAll(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	name := fmt.Sprintf("wq-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &syncBuffer{}
	err := run(ctx, []string{"-endpoints", srv.Endpoints()[0], "-name", name, "-items", "8", "-workers", "3"}, out)
	if err != nil || ctx.Err() != nil {
		t.Fatalf("run: %v (ctx %v)\n%s", err, ctx.Err(), out)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\noutput:\n%s", append(args, out)...)
	}

	// Every item done at least once; the fragile one only after it was
	// dead-lettered and re-driven, with its attempts reset.
	want := []string{"urgent-1", "urgent-2", "urgent-3", "fragile"}
	for i := 1; i <= 8; i++ {
		want = append(want, fmt.Sprintf("job-%d", i))
	}
	doneAt := map[string]int{}
	for i, l := range lines {
		if m := doneRe.FindStringSubmatch(l); m != nil {
			if _, ok := doneAt[m[1]]; !ok {
				doneAt[m[1]] = i
			}
		}
	}
	for _, it := range want {
		if _, ok := doneAt[it]; !ok {
			fail("%s never done", it)
		}
	}
	dead, redriven := -1, -1
	for i, l := range lines {
		if dead < 0 && deadRe.MatchString(l) {
			dead = i
		}
		if redriven < 0 && redriveRe.MatchString(l) {
			redriven = i
		}
	}
	if dead < 0 || redriven < dead || doneAt["fragile"] < redriven || !strings.HasSuffix(lines[doneAt["fragile"]], "(attempt 1)") {
		fail("fragile: dead at line %d, re-driven at %d, done at %d", dead, redriven, doneAt["fragile"])
	}

	// The crashed worker's item was redelivered and done on attempt 2.
	var crashed string
	for _, l := range lines {
		if m := crashRe.FindStringSubmatch(l); m != nil {
			crashed = m[1]
		}
	}
	if crashed == "" {
		fail("no worker crashed")
	}
	if m := doneRe.FindStringSubmatch(lines[doneAt[crashed]]); m[2] != "2" {
		fail("%s, held by the crashed worker, done on attempt %s, want 2", crashed, m[2])
	}

	// Urgent items were enqueued after the normal ones, so FIFO alone
	// would claim them last. Priority makes each overtake the backlog:
	// some normal job is first claimed after it. (Exactly where it lands
	// depends on how far the workers got while the producer was still
	// enqueueing, so the test asserts no more than that.)
	var firsts []string
	for _, l := range lines {
		if m := claimedRe.FindStringSubmatch(l); m != nil && m[2] == "1" {
			firsts = append(firsts, m[1])
		}
	}
	lastJob := -1
	for i, it := range firsts {
		if strings.HasPrefix(it, "job-") {
			lastJob = i
		}
	}
	for i, it := range firsts {
		if strings.HasPrefix(it, "urgent-") && i > lastJob {
			fail("first claims %v: %s was claimed after every normal job, as if it had no priority", firsts, it)
		}
	}

	// Nothing is left: no message ready, claimed, delayed or dead.
	st, err := queue.New(srv.Client(), name).Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st != (queue.Stats{}) {
		fail("queue left with %+v", st)
	}
}

// TestRoles runs the roles as separate processes would: a producer, two
// worker processes, and the operator's re-drive.
func TestRoles(t *testing.T) {
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	name := fmt.Sprintf("wq-roles-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := func(role string) []string {
		return []string{"-endpoints", srv.Endpoints()[0], "-name", name, "-items", "4", "-workers", "2", "-role", role}
	}
	out := &syncBuffer{}
	if err := run(ctx, args("producer"), out); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- run(wctx, args("worker"), out) }()
	}
	q := queue.New(srv.Client(), name)
	waitStats := func(want queue.Stats) {
		t.Helper()
		for {
			st, err := q.Stats(ctx)
			if err == nil && st == want {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("queue stats %+v (%v), want %+v\n%s", st, err, want, out)
			}
			time.Sleep(20 * time.Millisecond) // polling etcd for a count; no event to wait on
		}
	}
	waitStats(queue.Stats{Dead: 1}) // everything done but fragile, which is dead
	if err := run(ctx, args("redrive"), out); err != nil {
		t.Fatal(err)
	}
	waitStats(queue.Stats{})
	stop()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(out.String(), "fragile done (attempt 1)") {
		t.Fatalf("fragile not done after re-drive:\n%s", out)
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-workers", "0"}, {"-max-attempts", "-1"}, {"-role", "boss"}, {"-no-such-flag"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}
