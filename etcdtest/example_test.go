package etcdtest_test

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/etcdtest"
)

// Start a throwaway etcd server for a test, an example or a local tool.
func ExampleStart() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	ctx := context.Background()
	cli := srv.Client()
	cli.Put(ctx, "greeting", "hello")
	resp, _ := cli.Get(ctx, "greeting")
	fmt.Println(string(resp.Kvs[0].Value))
	// Output: hello
}

// Count the RPCs a piece of code makes.
func ExampleCounter() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	c := etcdtest.NewCounter()
	cli, _ := srv.NewClient(etcdtest.WithCounter(c))
	ctx := context.Background()
	cli.Put(ctx, "a", "1")
	cli.Get(ctx, "a")
	fmt.Println("Put:", c.Get("Put"), "Range:", c.Get("Range"), "RPCs:", c.Total(), "bytes read:", c.Bytes() > 0)
	// Output: Put: 1 Range: 1 RPCs: 2 bytes read: true
}
