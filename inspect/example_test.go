package inspect_test

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
)

// Who holds the "backup" lock, and who waits for it?
func ExampleGet() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	ctx := context.Background()
	s, _ := session.New(ctx, srv.Client())
	defer s.Close()
	m := lock.NewMutex(s, "backup")
	m.Lock(ctx)

	p, _ := inspect.Get(ctx, srv.Client(), "coord/", "lock", "backup")
	h := p.Holders[0]
	fmt.Println("holders:", len(p.Holders), "waiters:", len(p.Waiters))
	fmt.Println("token matches:", h.Token == m.Token(), "lease matches:", h.Lease == int64(s.Lease()))
	// Output:
	// holders: 1 waiters: 0
	// token matches: true lease matches: true
}
