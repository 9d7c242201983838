package leaktest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The tests below do not run in parallel: they count the server's
// watches and the process's goroutines, which other tests would move.

// cancelled is how many cancelled waits each test makes: 10,000, or
// 1,000 with -short.
func cancelled() int {
	if testing.Short() {
		return 1000
	}
	return 10000
}

// concurrency is how many waits are under way at once.
const concurrency = 64

// setup is one test's world: a client and a session of its own under a
// root of its own, so the root's keys are this test's alone.
type setup struct {
	t    *testing.T
	root string
	cli  *clientv3.Client
	s    *session.Session
}

func newSetup(t *testing.T) *setup {
	root := strings.ReplaceAll(etcdtest.Name(t), "_", "-") + "/"
	cli := etcdtest.NewTestClient(t, srv.Endpoints())
	s, err := session.New(etcdtest.Context(t, 10*time.Second), cli, session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &setup{t: t, root: root, cli: cli, s: s}
}

// snapshot is what a wait may leave behind.
type snapshot struct {
	keys       int64 // keys under the root
	goroutines int
	watchers   int // the server's watchers (etcd_debugging_mvcc_watcher_total)
	subs       int // subscriptions of the client's hub
}

func (st *setup) snapshot() snapshot {
	st.t.Helper()
	ctx := etcdtest.Context(st.t, 10*time.Second)
	resp, err := st.cli.Get(ctx, st.root, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		st.t.Fatal(err)
	}
	return snapshot{keys: resp.Count, goroutines: runtime.NumGoroutine(),
		watchers: serverWatchers(st.t), subs: watch.For(st.cli).Stats().Subs}
}

// serverWatchers reads the server's count of open watchers from its
// metrics endpoint: what every client of the server has watching.
func serverWatchers(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(srv.Endpoints()[0] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_debugging_mvcc_watcher_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatalf("no etcd_debugging_mvcc_watcher_total in the server's metrics (%v)", sc.Err())
	return 0
}

// settle waits until the world is back to base: keys and watches at once
// (the waits returned, so their cleanup is done), goroutines within a
// deadline (a returned wait's helpers take a moment to end, longer under
// -race on a loaded machine).
func (st *setup) settle(base snapshot) {
	st.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var now snapshot
	for {
		now = st.snapshot()
		if now.keys == base.keys && now.goroutines <= base.goroutines &&
			now.watchers <= base.watchers && now.subs <= base.subs {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	st.t.Fatalf("left behind: %+v, before: %+v\n%s", now, base, buf[:runtime.Stack(buf, true)])
}

// cancelMany runs n waits, concurrency at a time, each with a context
// that is cancelled: every third before the wait starts, the others
// right after it starts, so most are in line (their key written, their
// waiter registered) when the context ends. Every wait must return an
// error that is context.Canceled.
func cancelMany(t *testing.T, n int, wait func(ctx context.Context) error) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ctx, cancel := context.WithCancel(context.Background())
				var err error
				if i%3 == 0 {
					cancel()
					err = wait(ctx)
				} else {
					done := make(chan error, 1)
					go func() { done <- wait(ctx) }()
					if i%3 == 2 {
						runtime.Gosched()
					}
					cancel()
					err = <-done
				}
				if !errors.Is(err, context.Canceled) {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("wait %d: %v, want context.Canceled", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

// warm makes one wait that really waits, until its context times out, so
// that what the process keeps for reuse after a wait (a line's mirror and
// its watch, a queue's dispatcher and its feed: each idles on for 30 s
// after its last use) is running before the base is taken, and is not
// counted as left behind by the cancelled waits that follow.
func warm(t *testing.T, wait func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("warm-up wait: %v, want context.DeadlineExceeded", err)
	}
}

// TestCancelledLocks: cancelled Locks of a held lock on one session leave
// no keys, goroutines or watches behind.
func TestCancelledLocks(t *testing.T) {
	st := newSetup(t)
	name := "l"
	hs, err := session.New(etcdtest.Context(t, 10*time.Second), etcdtest.NewTestClient(t, srv.Endpoints()), session.WithPrefix(st.root))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	held := lock.NewMutex(hs, name)
	if err := held.Lock(etcdtest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	wait := func(ctx context.Context) error { return lock.NewMutex(st.s, name).Lock(ctx) }
	warm(t, wait)
	base := st.snapshot()
	start := time.Now()
	cancelMany(t, cancelled(), wait)
	t.Logf("%d cancelled Locks in %s", cancelled(), time.Since(start).Round(time.Millisecond))
	st.settle(base)
	// The lock is still the holder's, and the next Lock gets it after it.
	if err := held.Unlock(etcdtest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	m := lock.NewMutex(st.s, name)
	if err := m.Lock(etcdtest.Context(t, 10*time.Second)); err != nil {
		t.Fatalf("Lock after the cancelled ones: %v", err)
	}
	if err := m.Unlock(etcdtest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestCancelledAcquires: cancelled Acquires of a full semaphore on one
// session leave no keys, goroutines or watches behind.
func TestCancelledAcquires(t *testing.T) {
	st := newSetup(t)
	name := "s"
	hs, err := session.New(etcdtest.Context(t, 10*time.Second), etcdtest.NewTestClient(t, srv.Endpoints()), session.WithPrefix(st.root))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	p, err := semaphore.New(hs, name, 2).Acquire(etcdtest.Context(t, 10*time.Second), 2)
	if err != nil {
		t.Fatal(err)
	}
	sem := semaphore.New(st.s, name, 2)
	wait := func(ctx context.Context) error {
		_, err := sem.Acquire(ctx, 1)
		return err
	}
	warm(t, wait)
	base := st.snapshot()
	start := time.Now()
	cancelMany(t, cancelled(), wait)
	t.Logf("%d cancelled Acquires in %s", cancelled(), time.Since(start).Round(time.Millisecond))
	st.settle(base)
	if err := p.Release(etcdtest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	q, err := sem.Acquire(etcdtest.Context(t, 10*time.Second), 2)
	if err != nil {
		t.Fatalf("Acquire after the cancelled ones: %v", err)
	}
	if err := q.Release(etcdtest.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// TestCancelledClaims: cancelled Claims of an empty queue on one session
// leave no keys, goroutines or watches behind, and the queue still
// delivers.
func TestCancelledClaims(t *testing.T) {
	st := newSetup(t)
	q := queue.New(st.cli, "q", queue.WithPrefix(st.root))
	wait := func(ctx context.Context) error {
		m, err := q.Claim(ctx, st.s)
		if m != nil {
			return fmt.Errorf("claimed %s from an empty queue", m.ID)
		}
		return err
	}
	warm(t, wait)
	base := st.snapshot()
	start := time.Now()
	cancelMany(t, cancelled(), wait)
	t.Logf("%d cancelled Claims in %s", cancelled(), time.Since(start).Round(time.Millisecond))
	st.settle(base)
	ctx := etcdtest.Context(t, 10*time.Second)
	if _, err := q.Enqueue(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	m, err := q.Claim(ctx, st.s)
	if err != nil {
		t.Fatalf("Claim after the cancelled ones: %v", err)
	}
	if err := m.Ack(ctx); err != nil {
		t.Fatal(err)
	}
}
