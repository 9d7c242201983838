package lease_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/lease"
)

// A session whose grant and registration were slow to answer starts late
// into its lease's life: its first renewal is due a quarter TTL after the
// grant was sent, not a quarter TTL after New returned, or a healthy
// session dies before it renews (the soak saw one, after a partition
// healed under a pending grant).
func TestSlowGrantIsRenewedInTime(t *testing.T) {
	p, err := etcdtest.StartProxy(srv.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cli, err := etcdtest.NewClient(p.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx := etcdtest.Context(t, 30*time.Second)
	if _, err := cli.Get(ctx, "warm"); err != nil { // connect before the delay
		t.Fatal(err)
	}
	// Each way 350 ms: the grant and the marker's Put take 1.4 s of the
	// 3 s lease, whose deadline (less a tenth) is 2.7 s after the grant was
	// sent. A first renewal a quarter TTL after New returned would be
	// answered only at 2.85 s.
	p.Delay(350 * time.Millisecond)
	s, err := lease.New(ctx, cli, lease.Config{TTL: 3 * time.Second, Root: "lease-test/"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	select {
	case <-s.Done():
		t.Fatalf("a session slow to start was lost: %v", s.Err())
	case <-time.After(4 * time.Second):
	}
}
