package election_test

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
)

// A service that does its work only while it leads. Run campaigns, calls
// the work with a ctx that ends when the leadership does, and resigns
// when the service stops, so another replica takes over at once.
func ExampleRun() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	ctx, stop := context.WithCancel(context.Background())
	rounds := 0
	err = election.Run(ctx, srv.Client(), "billing", "replica-1", func(ctx context.Context) error {
		token, _ := election.TokenFrom(ctx)
		rounds++
		fmt.Println("leading, token issued:", token > 0)
		// Real work loops until ctx ends; here the service shuts down
		// after its first round.
		stop()
		<-ctx.Done()
		return nil
	})
	fmt.Println("stopped:", err, "after", rounds, "round")
	// Output:
	// leading, token issued: true
	// stopped: context canceled after 1 round
}

func ExampleElection() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()

	s, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	e := election.New(s, "scheduler")
	if err := e.Campaign(ctx, "host-a"); err != nil {
		panic(err)
	}
	l, _ := e.Leader(ctx)
	fmt.Println("leader:", l.Value, "token matches:", l.Token == e.Token())

	if err := e.Proclaim(ctx, "host-a:8080"); err != nil {
		panic(err)
	}
	l, _ = e.Leader(ctx)
	fmt.Println("leader:", l.Value)

	if err := e.Resign(ctx); err != nil {
		panic(err)
	}
	<-e.Done() // closed: no longer leading
	_, err = e.Leader(ctx)
	fmt.Println(err)
	// Output:
	// leader: host-a token matches: true
	// leader: host-a:8080
	// election "scheduler": election: no leader
}

func ExampleElection_Observe() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	s, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	e := election.New(s, "api")
	leaders := e.Observe(ctx)
	fmt.Printf("%+v\n", <-leaders) // no leader yet

	if err := e.Campaign(ctx, "10.0.0.1"); err != nil {
		panic(err)
	}
	fmt.Println((<-leaders).Value)
	if err := e.Resign(ctx); err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", <-leaders)
	// Output:
	// {Value: Token:0}
	// 10.0.0.1
	// {Value: Token:0}
}
