package group_test

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
)

// Replicas join a group with their address, and anyone can follow who is
// alive.
func ExampleJoin() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	views := group.New(srv.Client(), "api").Watch(ctx)
	fmt.Println("members:", (<-views).IDs())

	s, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	m, err := group.Join(ctx, s, "api", "replica-1", map[string]string{"addr": "10.0.0.7:8080"})
	if err != nil {
		panic(err)
	}
	v := <-views
	fmt.Println("joined:", v.Joined[0].ID, v.Joined[0].Meta["addr"])

	if _, err := group.Join(ctx, s, "api", "replica-1", nil); err != nil {
		fmt.Println(err)
	}
	if err := m.Leave(ctx); err != nil {
		panic(err)
	}
	fmt.Println("left:", (<-views).Left[0].ID)
	// Output:
	// members: []
	// joined: replica-1 10.0.0.7:8080
	// group "api" member "replica-1": group: member id taken
	// left: replica-1
}
