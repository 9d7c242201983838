package barrier_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
)

// TestLatchCountsEachIDOnce counts a latch of 21 down from 20 goroutines,
// each retrying its CountDown three times, some after a timeout that may
// or may not have reached etcd. Exactly 20 must count: the latch stays
// shut with one left, and the 21st id opens it.
func TestLatchCountsEachIDOnce(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	l := barrier.NewLatch(srv.Client(), name, 21)
	if n, err := l.Count(ctx); err != nil || n != 21 {
		t.Fatalf("Count before = %d, %v", n, err)
	}
	waiter := start(func() error { return barrier.NewLatch(srv.Client(), name, 21).Wait(ctx) })
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := barrier.WithID(fmt.Sprintf("task/%d", i))
			// A retry after a tiny timeout: the request may have been
			// applied or not; either way it must count at most once.
			tctx, cancel := context.WithTimeout(ctx, time.Duration(i%4)*time.Millisecond)
			l.CountDown(tctx, id)
			cancel()
			for r := 0; r < 3; r++ {
				if err := l.CountDown(ctx, id); err != nil {
					t.Errorf("CountDown %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	if n, err := l.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count after 20 ids with retries = %d, %v; want 1", n, err)
	}
	notYet(t, waiter, 200*time.Millisecond)
	if err := l.CountDown(ctx, barrier.WithID("last")); err != nil {
		t.Fatal(err)
	}
	if err := within(t, waiter, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count when open = %d, %v", n, err)
	}
	// Counting an open latch down is harmless.
	if err := l.CountDown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLatchWithoutIDCountsEveryCall(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	l := barrier.NewLatch(srv.Client(), fresh(t), 3)
	for i := 0; i < 2; i++ {
		if err := l.CountDown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.Count(ctx); err != nil || n != 1 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := l.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a shut latch = %v", err)
	}
	l.CountDown(ctx)
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLatchSurvivesCompaction(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	l := barrier.NewLatch(srv.Client(), name, 2)
	l.CountDown(ctx, barrier.WithID("a"))
	waiter := start(func() error { return l.Wait(ctx) })
	for i := 0; i < 3; i++ {
		srv.Client().Put(ctx, name+"-noise", "x")
		if err := srv.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	notYet(t, waiter, 200*time.Millisecond)
	l.CountDown(ctx, barrier.WithID("b"))
	if err := within(t, waiter, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestLatchCountMismatch(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	name := fresh(t)
	if err := barrier.NewLatch(srv.Client(), name, 3).CountDown(ctx, barrier.WithID("a")); err != nil {
		t.Fatal(err)
	}
	other := barrier.NewLatch(srv.Client(), name, 4)
	if err := other.CountDown(ctx, barrier.WithID("b")); !errors.Is(err, barrier.ErrCountMismatch) {
		t.Errorf("CountDown = %v, want ErrCountMismatch", err)
	}
	if _, err := other.Count(ctx); !errors.Is(err, barrier.ErrCountMismatch) {
		t.Errorf("Count = %v", err)
	}
	if err := other.Wait(ctx); !errors.Is(err, barrier.ErrCountMismatch) {
		t.Errorf("Wait = %v", err)
	}
	// The mismatched CountDown counted nothing.
	if n, _ := barrier.NewLatch(srv.Client(), name, 3).Count(ctx); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
}

func TestLatchDeleteStartsAfresh(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	root := fresh(t)
	l := barrier.NewLatch(srv.Client(), "job", 1, barrier.WithPrefix(root))
	l.CountDown(ctx, barrier.WithID("a"))
	if n, _ := l.Count(ctx); n != 0 {
		t.Fatalf("Count = %d", n)
	}
	if err := l.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if n := keysUnder(t, srv.Client(), root); n != 0 {
		t.Fatalf("%d keys left after Delete", n)
	}
	if n, _ := l.Count(ctx); n != 1 {
		t.Fatalf("Count after Delete = %d, want 1", n)
	}
}

func TestLatchBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	root := fresh(t)
	cli := srv.Client()
	bad := map[string]*barrier.Latch{
		"nil client":     barrier.NewLatch(nil, "x", 1),
		"empty name":     barrier.NewLatch(cli, "", 1, barrier.WithPrefix(root)),
		"long name":      barrier.NewLatch(cli, strings.Repeat("x", 513), 1, barrier.WithPrefix(root)),
		"invalid utf8":   barrier.NewLatch(cli, "\xff", 1, barrier.WithPrefix(root)),
		"negative count": barrier.NewLatch(cli, "x", -1, barrier.WithPrefix(root)),
	}
	for what, l := range bad {
		if err := l.CountDown(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: CountDown = %v, want ErrInvalid", what, err)
		}
		if err := l.Wait(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Wait = %v", what, err)
		}
		if _, err := l.Count(ctx); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("%s: Count = %v", what, err)
		}
	}
	l := barrier.NewLatch(cli, "x", 2, barrier.WithPrefix(root))
	for _, id := range []string{strings.Repeat("i", 513), "\xfe"} {
		if err := l.CountDown(ctx, barrier.WithID(id)); !errors.Is(err, barrier.ErrInvalid) {
			t.Errorf("id %.10q: %v", id, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.CountDown(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled CountDown: %v", err)
	}
	if err := l.Wait(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Wait: %v", err)
	}
	if n := keysUnder(t, cli, root); n != 0 {
		t.Errorf("%d stray keys under %s", n, root)
	}
	// A latch of 0 is open from the start.
	if err := barrier.NewLatch(cli, "zero", 0, barrier.WithPrefix(root)).Wait(ctx); err != nil {
		t.Errorf("latch of 0: %v", err)
	}
}
