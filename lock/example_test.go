package lock_test

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func ExampleMutex() {
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

	m := lock.NewMutex(s, "backup")
	if err := m.Lock(ctx); err != nil {
		panic(err)
	}
	// Guard your own writes with IsOwner: they fail once the lock is lost.
	resp, err := srv.Client().Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut("backup/last", "now")).Commit()
	if err != nil {
		panic(err)
	}
	fmt.Println("written while holding:", resp.Succeeded)
	fmt.Println("TryLock elsewhere:", lock.NewMutex(s, "backup").TryLock(ctx))
	if err := m.Unlock(ctx); err != nil {
		panic(err)
	}
	// Output:
	// written while holding: true
	// TryLock elsewhere: lock "backup": lock: locked elsewhere
}

func ExampleDo() {
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

	// Run a job on one replica at a time; ctx is cancelled if the lock is lost.
	err = lock.Do(ctx, s, "nightly-report", func(ctx context.Context) error {
		fmt.Println("running the report")
		return nil
	})
	fmt.Println("done:", err)
	// Output:
	// running the report
	// done: <nil>
}

func ExampleNewMulti() {
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

	// Both accounts at once, in one Txn: no deadlock whatever the order.
	m := lock.NewMulti(s, "account/42", "account/7")
	if err := m.Lock(ctx); err != nil {
		panic(err)
	}
	fmt.Println("holding", m.Names())
	if err := m.Unlock(ctx); err != nil {
		panic(err)
	}
	// Output:
	// holding [account/42 account/7]
}
