package lock_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
)

func TestRWReadersShareWritersExclude(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	s1, s2, s3 := newSession(t), newSession(t), newSession(t)
	r1, r2 := lock.NewRWMutex(s1, name), lock.NewRWMutex(s2, name)
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, async(func() error { return r2.RLock(ctx) }), 5*time.Second, "second reader"); err != nil {
		t.Fatalf("second reader while a reader holds: %v", err)
	}
	w := lock.NewRWMutex(s3, name)
	if err := w.TryLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("writer TryLock while readers hold: %v, want ErrLocked", err)
	}
	got := async(func() error { return w.Lock(ctx) })
	stillBlocked(t, got, 300*time.Millisecond, "writer while readers hold")
	if err := r1.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	stillBlocked(t, got, 200*time.Millisecond, "writer while one reader holds")
	if err := r2.RUnlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := within(t, got, 5*time.Second, "writer after readers left"); err != nil {
		t.Fatal(err)
	}
	if err := r1.TryRLock(ctx); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("TryRLock while a writer holds: %v, want ErrLocked", err)
	}
	if err := w.RUnlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("RUnlock of a write lock: %v, want ErrNotHeld", err)
	}
	if err := w.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r1.TryRLock(ctx); err != nil {
		t.Fatalf("TryRLock when free: %v", err)
	}
	if err := r1.Unlock(ctx); !errors.Is(err, lock.ErrNotHeld) {
		t.Fatalf("Unlock of a read lock: %v, want ErrNotHeld", err)
	}
	r1.RUnlock(ctx)
}

// A reader that asks after a waiting writer waits behind it, so a stream
// of readers can never starve a writer.
func TestRWWriterNotStarved(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 20*time.Second)
	s := newSession(t)
	r1 := lock.NewRWMutex(s, name)
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	w := lock.NewRWMutex(newSession(t), name)
	wgot := async(func() error { return w.Lock(ctx) })
	eventually(t, 5*time.Second, "writer queued", func() bool { return countKeys(t, s, keys.KindRWLock, name, "w") == 1 })
	r2 := lock.NewRWMutex(newSession(t), name)
	rgot := async(func() error { return r2.RLock(ctx) })
	stillBlocked(t, rgot, 300*time.Millisecond, "reader behind a waiting writer")
	r1.RUnlock(ctx)
	if err := within(t, wgot, 5*time.Second, "writer"); err != nil {
		t.Fatal(err)
	}
	stillBlocked(t, rgot, 200*time.Millisecond, "reader while the writer holds")
	w.Unlock(ctx)
	if err := within(t, rgot, 5*time.Second, "reader after the writer"); err != nil {
		t.Fatal(err)
	}
	if r2.Token() <= w.Token() && w.Token() != 0 {
		t.Fatal("reader's token not after the writer's")
	}
	r2.RUnlock(ctx)
}

func TestRWStress(t *testing.T) {
	t.Parallel()
	name := fresh(t)
	ctx := ctxT(t, 40*time.Second)
	var readers, writers, maxReaders atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 6 {
		s := newSession(t)
		wg.Go(func() {
			m := lock.NewRWMutex(s, name)
			for j := range 15 {
				if (i+j)%3 == 0 {
					if err := m.Lock(ctx); err != nil {
						errs <- err
						return
					}
					if writers.Add(1) != 1 || readers.Load() != 0 {
						errs <- errors.New("writer overlapped another holder")
					}
					writers.Add(-1)
					if err := m.Unlock(ctx); err != nil {
						errs <- err
						return
					}
					continue
				}
				if err := m.RLock(ctx); err != nil {
					errs <- err
					return
				}
				n := readers.Add(1)
				for {
					old := maxReaders.Load()
					if n <= old || maxReaders.CompareAndSwap(old, n) {
						break
					}
				}
				if writers.Load() != 0 {
					errs <- errors.New("reader overlapped a writer")
				}
				readers.Add(-1)
				if err := m.RUnlock(ctx); err != nil {
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
	t.Logf("at most %d readers at once", maxReaders.Load())
}
