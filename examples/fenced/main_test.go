package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

var srv *etcdtest.Server

// TestMain starts a server whose minimum lease TTL is 1 s, so the frozen
// replica's lease expires quickly.
func TestMain(m *testing.M) {
	var err error
	srv, err = etcdtest.Start(etcdtest.WithoutFsync(), etcdtest.WithElectionTimeout(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(etcdtest.CheckLeaks(code))
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The frozen replica's late result is refused, the others' are accepted,
// and no result older than the last ever got through.
func TestFrozenReplicaRefused(t *testing.T) {
	out := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, []string{"-endpoints", srv.Endpoints()[0], "-name", etcdtest.Name(t), "-ttl", "1s",
		"-work", "100ms", "-duration", "6s"}, out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	s := out.String()
	if !regexp.MustCompile(`replica-2: token \d+: freezing`).MatchString(s) ||
		!regexp.MustCompile(`replica-2: token \d+: result refused: 409 Conflict: fence: resource "[^"]+": token \d+ is older than \d+`).MatchString(s) {
		t.Fatalf("the frozen replica's late result was not refused:\n%s", s)
	}
	m := regexp.MustCompile(`done: (\d+) results accepted, (\d+) refused as stale, (\d+) accepted out of order`).FindStringSubmatch(s)
	if m == nil || m[1] == "0" || m[2] == "0" || m[3] != "0" {
		t.Fatalf("summary %q:\n%s", m, s)
	}
}
