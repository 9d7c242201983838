package gocron_test

import (
	"context"
	"fmt"
	"time"

	coordgocron "github.com/coord-go/coord/contrib/gocron"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	"github.com/go-co-op/gocron/v2"
)

// A gocron scheduler whose runs of a job exclude each other across the
// fleet, each fenced by its lock's token.
func ExampleLocker() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	s, err := session.New(context.Background(), srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()

	locker := coordgocron.NewLocker(s)
	sched, err := gocron.NewScheduler(gocron.WithDistributedLocker(locker))
	if err != nil {
		panic(err)
	}
	ran := make(chan int64, 1)
	_, err = sched.NewJob(gocron.OneTimeJob(gocron.OneTimeJobStartImmediately()),
		gocron.NewTask(func() { ran <- locker.Held("report").Token() }),
		gocron.WithName("report"))
	if err != nil {
		panic(err)
	}
	sched.Start()
	defer sched.Shutdown()
	select {
	case token := <-ran:
		fmt.Println("ran under the lock, fenced:", token > 0)
	case <-time.After(10 * time.Second):
		fmt.Println("did not run")
	}
	// Output:
	// ran under the lock, fenced: true
}
