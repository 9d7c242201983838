package shard_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
	"github.com/coord-go/coord/shard"
)

// Two replicas split 8 partitions: each works on the partitions it owns
// until its context says the partition moved, and a router asks who owns
// one.
func ExampleMap_Run() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	working := map[string][]string{} // replica -> partitions it works on
	start := func(id string) (stop func()) {
		s, err := session.New(ctx, srv.Client())
		if err != nil {
			panic(err)
		}
		m, err := group.Join(ctx, s, "consumers", id, map[string]string{"addr": id + ":8080"})
		if err != nil {
			panic(err)
		}
		rctx, end := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- shard.New(m, "partitions", shard.Count(8)).Run(rctx, func(ctx context.Context, sh *shard.Shard) error {
				mu.Lock()
				working[id] = append(working[id], sh.Name())
				mu.Unlock()
				<-ctx.Done() // consume partition sh.Name(), fenced by sh.Token()
				mu.Lock()
				defer mu.Unlock()
				for i, p := range working[id] {
					if p == sh.Name() {
						working[id] = append(working[id][:i], working[id][i+1:]...)
						break
					}
				}
				return nil
			})
		}()
		return func() { end(); <-done; s.Close() }
	}
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return len(working[id])
	}
	until := func(cond func() bool) {
		for !cond() {
			time.Sleep(10 * time.Millisecond)
		}
	}

	stopA := start("replica-a")
	until(func() bool { return count("replica-a") == 8 })
	fmt.Println("replica-a alone works on", count("replica-a"), "partitions")

	stopB := start("replica-b")
	defer stopB()
	until(func() bool { return count("replica-a") == 4 && count("replica-b") == 4 })
	fmt.Println("with replica-b: 4 each")

	ob := shard.NewObserver(srv.Client(), "partitions")
	o, err := ob.Owner(ctx, "3")
	if err != nil {
		panic(err)
	}
	mu.Lock()
	mine := append([]string(nil), working[o.Member.ID]...)
	mu.Unlock()
	sort.Strings(mine)
	fmt.Println("partition 3 is with its owner:", sort.SearchStrings(mine, "3") < len(mine) && mine[sort.SearchStrings(mine, "3")] == "3",
		"at", o.Member.Meta["addr"] == o.Member.ID+":8080")

	stopA()
	until(func() bool { return count("replica-b") == 8 })
	fmt.Println("replica-a gone: replica-b works on", count("replica-b"))
	// Output:
	// replica-a alone works on 8 partitions
	// with replica-b: 4 each
	// partition 3 is with its owner: true at true
	// replica-a gone: replica-b works on 8
}
