package semaphore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
)

// acquireCost measures, on a counted client of its own, the RPCs and the
// bytes read of 10 Acquire+Release rounds with free permits, with inLine
// permits held by another process.
func acquireCost(t *testing.T, inLine int) (rpcs, bytes int64) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	name := fmt.Sprintf("cost-%d", inLine)
	capacity := int64(inLine + 10)
	holder := semaphore.New(newSession(t, nil), name, capacity)
	for range inLine {
		if _, err := holder.Acquire(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := session.New(ctx, cli, session.WithPrefix(root(t)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	sem := semaphore.New(s2, name, capacity)
	// One round first: on a line longer than one read's window, a process
	// opens its mirror of the semaphore (one watch, one read) once.
	mustRelease(t, mustAcquire(t, sem, 1))
	c.Reset()
	for range 10 {
		mustRelease(t, mustAcquire(t, sem, 1))
	}
	return c.Total("Txn", "DeleteRange", "Range", "Watch.Create"), c.Bytes()
}

// Acquire with free permits and Release cost the same RPCs with 0 and
// 500 permits in the line, and read no more than a window of it: the
// Acquire Txn used to read the whole line, with every request's value.
func TestAcquireCostDoesNotGrowWithTheLine(t *testing.T) {
	t.Parallel()
	r0, b0 := acquireCost(t, 0)
	r1, b1 := acquireCost(t, 500)
	t.Logf("0 in line: %d RPCs, %d bytes read; 500 in line: %d RPCs, %d bytes read (10 rounds)", r0, b0, r1, b1)
	if r0 != 20 || r1 != 20 {
		t.Fatalf("10 Acquire+Release rounds cost %d RPCs with 0 in line and %d with 500, want 20 (a Txn and a delete each)", r0, r1)
	}
	// The Txn reads at most a window (32 requests, small records).
	if b1 > 10*32*150 {
		t.Fatalf("10 rounds read %d bytes with 500 permits in line: the line is being read", b1)
	}
}
