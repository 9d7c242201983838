package inspect_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
)

// WithoutTTL reads no lease: the members keep their lease ids, and their
// TTLLeft is -1.
func TestWithoutTTLReadsNoLease(t *testing.T) {
	t.Parallel()
	root := etcdtest.Name(t) + "/"
	ctx := etcdtest.Context(t, 10*time.Second)
	s, err := session.New(ctx, srv.Client(), session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := lock.NewMutex(s, "l").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	c := etcdtest.NewCounter()
	cli := etcdtest.NewTestClient(t, srv.Endpoints(), etcdtest.WithCounter(c))
	for _, get := range []func() (inspect.Primitive, error){
		func() (inspect.Primitive, error) {
			return inspect.Get(ctx, cli, root, "lock", "l", inspect.WithoutTTL())
		},
		func() (inspect.Primitive, error) {
			ps, err := inspect.List(ctx, cli, root, inspect.WithoutTTL())
			if err != nil || len(ps) != 1 {
				t.Fatalf("List: %v, %v", ps, err)
			}
			return ps[0], nil
		},
	} {
		p, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Holders) != 1 || p.Holders[0].Lease != int64(s.Lease()) || p.Holders[0].TTLLeft != -1 {
			t.Fatalf("holders: %+v", p.Holders)
		}
	}
	if n := c.Get("LeaseTimeToLive"); n != 0 {
		t.Errorf("WithoutTTL made %d TimeToLive calls", n)
	}
	if p, err := inspect.Get(ctx, cli, root, "lock", "l"); err != nil || p.Holders[0].TTLLeft <= 0 || c.Get("LeaseTimeToLive") != 1 {
		t.Errorf("without the option: %+v, %v, %d TimeToLive", p.Holders, err, c.Get("LeaseTimeToLive"))
	}
}
