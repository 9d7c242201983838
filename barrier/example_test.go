package barrier_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
)

// A deploy gate: workers wait until an operator opens it.
func ExampleBarrier() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()

	gate := barrier.New(srv.Client(), "deploy-v2")
	if err := gate.Hold(ctx); err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker would use its own client; the name is what matters.
			if err := barrier.New(srv.Client(), "deploy-v2").Wait(ctx); err != nil {
				panic(err)
			}
		}()
	}
	if err := gate.Release(ctx); err != nil {
		panic(err)
	}
	wg.Wait()
	fmt.Println("all workers passed the gate")
	// Output: all workers passed the gate
}

// A hold tied to a session: if the holder dies, the gate opens by itself.
func ExampleBarrier_HoldWith() {
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
	gate := barrier.New(srv.Client(), "migration")
	if err := gate.HoldWith(ctx, s); err != nil {
		panic(err)
	}
	held, _ := gate.Held(ctx)
	fmt.Println("held:", held)
	s.Close() // or the holder crashes, and its lease expires
	if err := gate.Wait(ctx); err != nil {
		panic(err)
	}
	fmt.Println("open")
	// Output:
	// held: true
	// open
}

// Three workers start a phase together and finish it together.
func ExampleDoubleBarrier() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()

	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := session.New(ctx, srv.Client())
			if err != nil {
				panic(err)
			}
			defer s.Close()
			phase := barrier.NewDouble(s, "phase", 3)
			if err := phase.Enter(ctx); err != nil {
				panic(err)
			}
			// ... all three work here at once ...
			if err := phase.Leave(ctx); err != nil {
				panic(err)
			}
		}()
	}
	wg.Wait()
	fmt.Println("phase done by all three")
	// Output: phase done by all three
}

// Wait for N shards to finish; a shard that retries its CountDown is
// counted once.
func ExampleLatch() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()

	done := barrier.NewLatch(srv.Client(), "reindex", 3)
	for _, shard := range []string{"a", "b", "b", "c"} { // "b" retried
		if err := done.CountDown(ctx, barrier.WithID(shard)); err != nil {
			panic(err)
		}
	}
	if err := done.Wait(ctx); err != nil {
		panic(err)
	}
	left, _ := done.Count(ctx)
	fmt.Println("left:", left)
	// Output: left: 0
}
