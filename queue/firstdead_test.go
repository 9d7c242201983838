package queue_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/queue"
)

// FirstDeadLetters reads at most n, the oldest first, in as many reads as
// n needs and no more, whatever the list holds.
func TestFirstDeadLettersIsBounded(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	q := queue.New(srv.Client(), qname(t, "first-dead"))
	s := newSession(t)
	var ids []string
	for i := range 70 {
		ids = append(ids, enqueue(t, q, fmt.Sprint(i)))
	}
	for range ids {
		m, err := q.Claim(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Dead(ctx, "bad"); err != nil {
			t.Fatal(err)
		}
	}
	c := etcdtest.NewCounter()
	cq := queue.New(etcdtest.NewTestClient(t, srv.Endpoints(), etcdtest.WithCounter(c)), q.Name())
	for _, n := range []int{1, 3, 64, 65, 100} {
		before := c.Total()
		got, err := cq.FirstDeadLetters(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		want := min(n, len(ids))
		if len(got) != want {
			t.Fatalf("FirstDeadLetters(%d): %d letters, want %d", n, len(got), want)
		}
		for i, dl := range got {
			if dl.ID != ids[i] || dl.Reason != "bad" || string(dl.Payload) != fmt.Sprint(i) {
				t.Fatalf("FirstDeadLetters(%d)[%d] = %s %q %q, want %s", n, i, dl.ID, dl.Reason, dl.Payload, ids[i])
			}
		}
		// A page is one Range and one Txn for its payloads.
		if rpcs, pages := c.Total()-before, int64((want+63)/64); rpcs > 2*pages {
			t.Errorf("FirstDeadLetters(%d): %d RPCs, want at most %d", n, rpcs, 2*pages)
		}
	}
	if _, err := q.FirstDeadLetters(ctx, 0); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("FirstDeadLetters(0): %v, want ErrInvalid", err)
	}
}
