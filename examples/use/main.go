// Command use is the README's "Use" example, kept here so that it always
// compiles and runs (main_test.go runs it and checks the README's copy).
package main

import (
	"context"
	"log"
	"os"
	"strings"
	"time"

	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	endpoints := []string{"localhost:2379"}
	if e := os.Getenv("ETCDCTL_ENDPOINTS"); e != "" {
		endpoints = strings.Split(e, ",")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(), // the etcd client logs to stderr otherwise
	})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := session.New(ctx, cli) // one per process: one lease, kept alive
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close() // releases everything the session holds, at once

	m := lock.NewMutex(s, "backup")
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	// Guard writes with the fencing token m.Token(), or with m.IsOwner()
	// in your own Txn; m.Done() is closed if the lock is lost.
	log.Printf("holding lock %q, token %d", "backup", m.Token())
	if err := m.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
}
