package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) {
	var err error
	srv, err = etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	srv.Close()
	os.Exit(etcdtest.CheckLeaks(code))
}

// syncBuffer is a strings.Builder safe for concurrent writes.
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

var ranRe = regexp.MustCompile(`(?m)(\S+): tick (\S+) ran \(run #(\d+), token (\d+)\)$`)

// TestOncePerTick runs three replicas with each scheduler for a few
// seconds and checks, from what they print and from the history of the
// result in etcd, that every tick ran once and results never went back.
func TestOncePerTick(t *testing.T) {
	t.Parallel()
	for _, sched := range []string{"schedule", "gocron", "elector"} {
		t.Run(sched, func(t *testing.T) {
			t.Parallel()
			c := config{name: fmt.Sprintf("cron-%s-%d", sched, time.Now().UnixNano())}
			cli := srv.Client()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			get, err := cli.Get(ctx, c.resultKey())
			if err != nil {
				t.Fatal(err)
			}
			// Watching from the revision just read misses no write.
			events := cli.Watch(ctx, c.resultKey(), clientv3.WithRev(get.Header.Revision+1))

			out := &syncBuffer{}
			rctx, stop := context.WithTimeout(ctx, 3*time.Second)
			defer stop()
			err = run(rctx, []string{"-endpoints", strings.Join(srv.Endpoints(), ","), "-replicas", "3",
				"-id", "r", "-name", c.name, "-every", "200ms", "-ttl", "3s", "-scheduler", sched}, out)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}

			seen := map[string]string{}
			var ran int
			for line := range strings.SplitSeq(out.String(), "\n") {
				m := ranRe.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				ran++
				if other, dup := seen[m[2]]; dup {
					t.Errorf("tick %s ran twice, by %s and %s", m[2], other, m[1])
				}
				seen[m[2]] = m[1]
			}
			// 3 s at 200 ms is 15 ticks; a slow machine may miss some.
			if ran < 4 {
				t.Fatalf("%d ticks ran in 3s at 200ms:\n%s", ran, out)
			}

			var prev result
			for n := 0; n < ran; {
				select {
				case wr := <-events:
					for _, ev := range wr.Events {
						var r result
						if err := json.Unmarshal(ev.Kv.Value, &r); err != nil {
							t.Fatal(err)
						}
						if r.Tick <= prev.Tick || r.Runs != prev.Runs+1 || r.Token < prev.Token {
							t.Errorf("result went from %+v to %+v", prev, r)
						}
						prev = r
						n++
					}
				case <-ctx.Done():
					t.Fatalf("saw %d result writes, want %d (one per tick printed)", n, ran)
				}
			}
			if prev.Runs != int64(ran) {
				t.Errorf("last result %+v; %d ticks ran", prev, ran)
			}
		})
	}
}

// TestLateReplicaFenced plays a replica that takes the lock for a tick,
// is paused until its session expires, and wakes up after another
// replica has run the next tick: its write is refused.
func TestLateReplicaFenced(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := srv.Client()
	c := config{name: fmt.Sprintf("cron-late-%d", time.Now().UnixNano())}
	out := &output{w: io.Discard}
	tick := time.Now().Truncate(time.Second)

	slow, err := session.New(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	m1 := lock.NewMutex(slow, c.name)
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token1, guard1 := m1.Token(), m1.IsOwner()
	slow.Close() // the pause outlived the session: the lock is gone

	fast, err := session.New(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	m2 := lock.NewMutex(fast, c.name)
	if err := m2.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := job(ctx, cli, c, "fast", tick.Add(time.Second), m2.Token(), m2.IsOwner(), out); !ok || err != nil {
		t.Fatalf("fast replica did not run: %v", err)
	}
	if err := m2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// The late replica tries its old tick, the newest tick, and a later
	// one: the stale guard refuses them all, and so does its older token
	// without a guard.
	for _, late := range []time.Time{tick, tick.Add(time.Second), tick.Add(2 * time.Second)} {
		for _, g := range []clientv3.Cmp{guard1, {}} {
			if ok, err := job(ctx, cli, c, "slow", late, token1, g, out); ok || err != nil {
				t.Errorf("late write for %v (guard %v): ran %v, %v", late, g != clientv3.Cmp{}, ok, err)
			}
		}
	}
	get, err := cli.Get(ctx, c.resultKey())
	if err != nil || len(get.Kvs) != 1 {
		t.Fatal(get, err)
	}
	var r result
	json.Unmarshal(get.Kvs[0].Value, &r)
	if r.Replica != "fast" || r.Runs != 1 {
		t.Fatalf("result %+v, want the fast replica's", r)
	}
}

// TestEmbedded runs the default, an embedded etcd, for a few ticks.
func TestEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program for 4 s; run without -short")
	}
	t.Parallel()
	out := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-every", "250ms"}, out); err != nil {
		t.Fatal(err)
	}
	if n := len(ranRe.FindAllString(out.String(), -1)); n < 2 {
		t.Fatalf("%d ticks ran:\n%s", n, out)
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-every", "0s"}, {"-scheduler", "at"}, {"-no-such-flag"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}
