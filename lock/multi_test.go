package lock_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
)

func TestMultiExcludesMutexAndTakesAllOrNone(t *testing.T) {
	t.Parallel()
	base := fresh(t)
	a, b, c := base+"a", base+"b", base+"c"
	ctx := ctxT(t, 20*time.Second)
	s1, s2 := newSession(t), newSession(t)
	single := lock.NewMutex(s1, b)
	if err := single.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	mm := lock.NewMulti(s2, a, b, c, a)
	if got := mm.Names(); len(got) != 3 {
		t.Fatalf("Names = %v, want 3 deduplicated names", got)
	}
	if err := mm.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("Multi TryLock with one name held: %v, want ErrLocked", err)
	}
	for _, n := range []string{a, c} {
		if k := countKeys(t, s2, keys.KindLock, n, "w"); k != 0 {
			t.Fatalf("failed TryLock left %d keys on %q", k, n)
		}
	}
	got := async(func() error { return mm.Lock(ctx) })
	stillBlocked(t, got, 300*time.Millisecond, "Multi Lock with one name held")
	if err := single.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, got, 5*time.Second, "Multi Lock after release"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{a, b, c} {
		if err := lock.NewMutex(s1, n).TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("Mutex %q TryLock while Multi holds: %v, want ErrLocked", n, err)
		}
	}
	resp, err := srv.Client().Txn(ctx).If(mm.IsOwner()...).Commit()
	if err != nil || !resp.Succeeded {
		t.Fatalf("Multi IsOwner: %v %v", resp, err)
	}
	if err := mm.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lock.NewMutex(s1, c).TryLock(ctx); err != nil {
		t.Fatalf("TryLock after Multi Unlock: %v", err)
	}
}

// Goroutines take random overlapping sets of names in random orders; with
// per-name locks taken one by one this deadlocks quickly.
func TestMultiOverlappingSetsNeverDeadlock(t *testing.T) {
	t.Parallel()
	base := fresh(t)
	names := []string{base + "a", base + "b", base + "c", base + "d"}
	var held [4]atomic.Int64
	ctx := ctxT(t, 40*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	var cycles atomic.Int64
	for g := range 8 {
		s := newSession(t)
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 42))
			for range 12 {
				idx := r.Perm(4)[:2+r.IntN(3)]
				var set []string
				for _, i := range idx {
					set = append(set, names[i])
				}
				m := lock.NewMulti(s, set...)
				if err := m.Lock(ctx); err != nil {
					errs <- fmt.Errorf("Lock %v: %w", set, err)
					return
				}
				for _, i := range idx {
					if held[i].Add(1) != 1 {
						errs <- fmt.Errorf("%q held twice", names[i])
					}
				}
				for _, i := range idx {
					held[i].Add(-1)
				}
				cycles.Add(1)
				if err := m.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if cycles.Load() != 96 {
		t.Fatalf("%d cycles, want 96", cycles.Load())
	}
}
