package semaphore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
)

func ExampleSemaphore() {
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

	// At most 4 GPU jobs across the fleet; this one needs 3.
	gpu := semaphore.New(s, "gpu", 4)
	p, err := gpu.Acquire(ctx, 3)
	if err != nil {
		panic(err)
	}
	free, _ := gpu.Available(ctx)
	fmt.Println("free:", free)

	// A request that does not fit now fails at once with TryAcquire.
	_, err = gpu.TryAcquire(ctx, 2)
	fmt.Println("TryAcquire(2):", errors.Is(err, semaphore.ErrNoPermits))

	// Run the job, giving up if the permit is lost with the session.
	select {
	case <-p.Done():
		fmt.Println("lost the permit")
	default:
		fmt.Println("running with", p.Weight(), "permits")
	}
	if err := p.Release(ctx); err != nil {
		panic(err)
	}
	free, _ = gpu.Available(ctx)
	fmt.Println("free:", free)
	// Output:
	// free: 1
	// TryAcquire(2): true
	// running with 3 permits
	// free: 4
}

func ExampleSemaphore_SetCapacity() {
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

	db := semaphore.New(s, "legacy-db", 20)
	p, err := db.Acquire(ctx, 15)
	if err != nil {
		panic(err)
	}
	// The DB is struggling: lower the limit for everyone. The holder keeps
	// its 15; nothing new is granted until use falls under 10.
	if err := db.SetCapacity(ctx, 10); err != nil {
		panic(err)
	}
	st, _ := db.State(ctx)
	fmt.Println("capacity:", st.Capacity, "holders:", len(st.Holders), "held:", st.Holders[0].Weight)

	// A user still configured with the old limit follows the new one.
	_, err = semaphore.New(s, "legacy-db", 20).TryAcquire(ctx, 1)
	fmt.Println("TryAcquire(1):", errors.Is(err, semaphore.ErrNoPermits))
	p.Release(ctx)
	free, _ := db.Available(ctx)
	fmt.Println("free:", free)
	// Output:
	// capacity: 10 holders: 1 held: 15
	// TryAcquire(1): true
	// free: 10
}
