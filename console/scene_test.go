package console_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
)

// scene fills root with what a small fleet keeps in etcd: a held lock
// with waiters, an election with a leader and standbys, a semaphore
// mostly taken, a queue with work in every state and dead letters, a
// schedule with a run under way, a group, a barrier and a latch.
func scene(t *testing.T, root string) {
	t.Helper()
	ctx := etcdtest.Context(t, 60*time.Second)
	bg, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hosts := make([]*session.Session, 4)
	for i := range hosts {
		hosts[i] = newSession(t, root)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(lock.NewMutex(hosts[0], "db-migrate").Lock(ctx))
	for _, s := range hosts[1:3] {
		go lock.NewMutex(s, "db-migrate").Lock(bg)
	}
	must(lock.NewMutex(hosts[2], "backup/nightly").Lock(ctx))
	must(election.New(hosts[1], "api-primary").Campaign(ctx, "api-7f9c"))
	for i, s := range []*session.Session{hosts[2], hosts[3]} {
		go election.New(s, "api-primary").Campaign(bg, fmt.Sprintf("api-%d", 2+i))
	}
	gpu := semaphore.New(hosts[0], "gpu", 4)
	_, err := gpu.Acquire(ctx, 2)
	must(err)
	_, err = semaphore.New(hosts[3], "gpu", 4).Acquire(ctx, 1)
	must(err)
	go semaphore.New(hosts[1], "gpu", 4).Acquire(bg, 2)

	q := queue.New(hosts[0].Client(), "emails", queue.WithPrefix(root))
	for i := range 40 {
		_, err := q.Enqueue(ctx, fmt.Appendf(nil, `{"to":"user%d@example.com","template":"welcome"}`, i))
		must(err)
	}
	for range 3 {
		_, err := q.Enqueue(ctx, []byte(`{"to":"later@example.com"}`), queue.WithDelay(time.Hour))
		must(err)
	}
	for _, s := range hosts[1:3] {
		_, err := q.Claim(ctx, s)
		must(err)
	}
	for _, reason := range []string{"smtp: 550 5.1.1 mailbox unavailable", "template \"welcome-v2\" not found", "smtp: 550 5.1.1 mailbox unavailable"} {
		m, err := q.Claim(ctx, hosts[3])
		must(err)
		must(m.Dead(ctx, reason))
	}

	sc := schedule.New(hosts[0].Client(), "nightly-report", schedule.Every(time.Second), schedule.WithPrefix(root))
	running := make(chan struct{}, 1)
	for _, s := range hosts[:2] {
		go sc.Run(bg, s, func(ctx context.Context, _ schedule.Tick) error {
			select {
			case running <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return nil
		})
	}
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("the schedule never ran")
	}
	for i, s := range hosts[:3] {
		_, err := group.Join(ctx, s, "workers", fmt.Sprintf("worker-%d", i), map[string]string{"zone": "eu-west-1a"})
		must(err)
	}
	must(barrier.New(hosts[0].Client(), "deploy-gate", barrier.WithPrefix(root)).Hold(ctx))
	must(barrier.NewLatch(hosts[0].Client(), "warmup", 3, barrier.WithPrefix(root)).CountDown(ctx))
}
