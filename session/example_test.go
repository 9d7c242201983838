package session_test

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
)

// A session is the liveness of one process: primitives built on it
// release everything when it ends.
func ExampleNew() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	ctx := context.Background()
	s, err := session.New(ctx, srv.Client(), session.WithTTL(10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("alive:", s.Err() == nil, "ttl:", s.TTL())

	s.Close() // revokes the lease: everything the session held goes now
	<-s.Done()
	fmt.Println("after Close:", s.Err())
	// Output:
	// alive: true ttl: 10s
	// after Close: session: closed
}

// Done tells a holder its lease is gone, before anyone else can be
// granted what it held.
func ExampleSession_Done() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	ctx := context.Background()
	s, _ := session.New(ctx, srv.Client())
	defer s.Close()

	srv.Client().Revoke(ctx, s.Lease()) // an operator revokes the lease
	<-s.Done()
	fmt.Println(s.Err() != nil)
	// Output: true
}
