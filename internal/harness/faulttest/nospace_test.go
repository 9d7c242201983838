package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/barrier"
	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/ratelimit"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	"github.com/coord-go/coord/shard"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// noSpaceCase is one primitive's operation, tried while etcd is out of
// space and again after the space was reclaimed.
type noSpaceCase struct {
	name string
	// op runs the operation once on session s; it returns what the
	// operation returned, having undone whatever it took.
	op func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error
	// works: the operation needs no new space (it only deletes, or
	// only reads), so it succeeds under NOSPACE too.
	works bool
}

func noSpaceCases(root string) []noSpaceCase {
	name := func(kind string, n int) string { return fmt.Sprintf("%s-%d", kind, n) }
	return []noSpaceCase{
		{name: "session.New", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			s2, err := session.New(ctx, cli, session.WithPrefix(root))
			if err == nil {
				s2.Close()
			}
			return err
		}},
		{name: "lock.Mutex.Lock", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m := lock.NewMutex(s, name("mutex", n))
			if err := m.Lock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		}},
		{name: "lock.Mutex.TryLock", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m := lock.NewMutex(s, name("trymutex", n))
			if err := m.TryLock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		}},
		{name: "lock.RWMutex.RLock", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m := lock.NewRWMutex(s, name("rw", n))
			if err := m.RLock(ctx); err != nil {
				return err
			}
			return m.RUnlock(ctx)
		}},
		{name: "lock.MultiMutex.Lock", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m := lock.NewMulti(s, name("multi-a", n), name("multi-b", n))
			if err := m.Lock(ctx); err != nil {
				return err
			}
			return m.Unlock(ctx)
		}},
		{name: "semaphore.Acquire", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			p, err := semaphore.New(s, name("sem", n), 2).Acquire(ctx, 1)
			if err != nil {
				return err
			}
			return p.Release(ctx)
		}},
		{name: "election.Campaign", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			e := election.New(s, name("elect", n))
			if err := e.Campaign(ctx, "v"); err != nil {
				return err
			}
			return e.Resign(ctx)
		}},
		{name: "barrier.Hold", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			b := barrier.New(cli, name("gate", n), barrier.WithPrefix(root))
			if err := b.Hold(ctx); err != nil {
				return err
			}
			return b.Release(ctx)
		}},
		{name: "barrier.Barrier.Release", works: true, op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			return barrier.New(cli, "stored", barrier.WithPrefix(root)).Release(ctx)
		}},
		{name: "barrier.DoubleBarrier.Enter", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			d := barrier.NewDouble(s, name("double", n), 1)
			if err := d.Enter(ctx); err != nil {
				return err
			}
			return d.Leave(ctx)
		}},
		{name: "barrier.Latch.CountDown", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			l := barrier.NewLatch(cli, name("latch", n), 2, barrier.WithPrefix(root))
			if err := l.CountDown(ctx); err != nil {
				return err
			}
			return l.Delete(ctx)
		}},
		{name: "queue.Enqueue", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			q := queue.New(cli, name("q", n), queue.WithPrefix(root))
			_, err := q.Enqueue(ctx, []byte("job"))
			return err
		}},
		{name: "queue.Claim", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m, err := queue.New(cli, "ready", queue.WithPrefix(root)).Claim(ctx, s)
			if err != nil {
				return err
			}
			return m.Ack(ctx)
		}},
		{name: "schedule.Trigger", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			return schedule.New(cli, "stored", schedule.Every(time.Hour), schedule.WithPrefix(root)).Trigger(ctx)
		}},
		{name: "schedule.Run", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			return runOnce(ctx, s, schedule.New(cli, name("sched", n), schedule.Every(20*time.Millisecond), schedule.WithPrefix(root)))
		}},
		{name: "ratelimit.ReserveN", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			r, err := ratelimit.New(s, name("rate", n), ratelimit.Per(100, time.Second), 10).ReserveN(ctx, 1)
			if err != nil {
				return err
			}
			_ = r
			return nil
		}},
		{name: "group.Join", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m, err := group.Join(ctx, s, name("group", n), "me", nil)
			if err != nil {
				return err
			}
			return m.Leave(ctx)
		}},
		{name: "shard.Map.Run", op: func(ctx context.Context, s *session.Session, cli *clientv3.Client, n int) error {
			m, err := group.Join(ctx, s, "shards-group", fmt.Sprint("me-", n), nil)
			if err != nil {
				return err
			}
			defer m.Leave(context.WithoutCancel(ctx))
			rctx, stop := context.WithCancel(ctx)
			defer stop()
			got := make(chan struct{}, 1)
			err = shard.New(m, name("shards", n), shard.Count(1)).Run(rctx, func(ctx context.Context, sh *shard.Shard) error {
				select {
				case got <- struct{}{}:
				default:
				}
				stop()
				<-ctx.Done()
				return nil
			})
			if len(got) == 1 {
				return nil // ran its shard
			}
			return err
		}},
	}
}

// TestNoSpace fills a server with a small backend quota until it raises
// the NOSPACE alarm, then tries every primitive: each must fail at once
// with an error wrapping session.ErrNoSpace (never hang, never retry
// forever) or, if it needs no space, work; what was held before the alarm
// must stay held (its session's keepalives still work under NOSPACE, so
// no Done closes). Then the space is reclaimed (compaction,
// defragmentation, alarm disarmed) and everything works again on the same
// sessions, without a restart.
func TestNoSpace(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithQuotaBackendBytes(2<<20))
	cli := srv.Client()
	ctx := etcdtest.Context(t, 3*time.Minute)
	root := "nospace/"
	s, err := session.New(ctx, cli, session.WithPrefix(root), session.WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Held before the alarm: a lock, a leadership, a permit, a claimed
	// message; and a message ready to be claimed.
	held := lock.NewMutex(s, "held")
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	leader := election.New(s, "held")
	if err := leader.Campaign(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	permit, err := semaphore.New(s, "held", 1).Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	rq := queue.New(cli, "ready", queue.WithPrefix(root))
	for range 4 {
		if _, err := rq.Enqueue(ctx, []byte("job")); err != nil {
			t.Fatal(err)
		}
	}
	claimed, err := rq.Claim(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	// A schedule that ran once, for Trigger.
	if err := runOnce(ctx, s, schedule.New(cli, "stored", schedule.Every(20*time.Millisecond), schedule.WithPrefix(root))); err != nil {
		t.Fatal(err)
	}

	// Held before the alarm and let go under it.
	held2 := lock.NewMutex(s, "held2")
	if err := held2.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	leader2 := election.New(s, "held2")
	if err := leader2.Campaign(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	permit2, err := semaphore.New(s, "held2", 1).Acquire(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	// A gate shut before the alarm, with a waiter: its Release under
	// NOSPACE (a case below) must still let the waiter through.
	gate := barrier.New(cli, "stored", barrier.WithPrefix(root))
	if err := gate.Hold(ctx); err != nil {
		t.Fatal(err)
	}
	gateWaited := make(chan error, 1)
	go func() { gateWaited <- barrier.New(cli, "stored", barrier.WithPrefix(root)).Wait(ctx) }()

	fill(ctx, t, cli)
	alarmed := time.Now()

	// Letting go under NOSPACE: it works (a release only deletes) or
	// fails with session.ErrNoSpace and the hold is still held.
	type release struct {
		name string
		rel  func(context.Context) error
		done <-chan struct{}
	}
	var retry []release
	for _, r := range []release{
		{"lock.Mutex.Unlock", held2.Unlock, held2.Done()},
		{"election.Resign", leader2.Resign, leader2.Done()},
		{"semaphore.Permit.Release", permit2.Release, permit2.Done()},
	} {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := r.rel(rctx)
		cancel()
		switch {
		case err == nil:
			t.Logf("%s under NOSPACE: works (it only deletes)", r.name)
		case errors.Is(err, session.ErrNoSpace):
			t.Logf("%s under NOSPACE: session.ErrNoSpace, still held: %v", r.name, err)
			select {
			case <-r.done:
				t.Errorf("%s failed under NOSPACE and its Done closed", r.name)
			default:
			}
			retry = append(retry, r)
		default:
			t.Errorf("%s under NOSPACE: %v, want success or session.ErrNoSpace", r.name, err)
		}
	}

	cases := noSpaceCases(root)
	for i, c := range cases {
		t.Run("full/"+c.name, func(t *testing.T) {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			err := c.op(octx, s, cli, i)
			took := time.Since(start)
			switch {
			case c.works && err != nil:
				t.Errorf("%s under NOSPACE: %v, want success (it needs no space)", c.name, err)
			case c.works:
				t.Logf("%s under NOSPACE: works (%v)", c.name, took.Round(time.Millisecond))
			case err == nil:
				t.Errorf("%s under NOSPACE succeeded", c.name)
			case !errors.Is(err, session.ErrNoSpace):
				t.Errorf("%s under NOSPACE: %v (after %v), want an error wrapping session.ErrNoSpace", c.name, err, took.Round(time.Millisecond))
			default:
				t.Logf("%s under NOSPACE: session.ErrNoSpace after %v: %v", c.name, took.Round(time.Millisecond), err)
			}
		})
	}
	select {
	case err := <-gateWaited:
		if err != nil {
			t.Errorf("barrier.Wait after a Release under NOSPACE: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("barrier.Wait did not return within 10 s of a Release under NOSPACE")
	}
	// The message claimed before the alarm can still be acked: an Ack
	// only deletes.
	if err := claimed.Ack(ctx); err != nil {
		t.Errorf("queue.Message.Ack under NOSPACE: %v", err)
	} else {
		t.Logf("queue.Message.Ack under NOSPACE: works (it only deletes)")
	}

	// Holders are not reported lost: well past the session's TTL under
	// NOSPACE, every Done is open.
	for time.Since(alarmed) < 2*s.TTL() {
		select {
		case <-held.Done():
			t.Fatalf("the lock held before NOSPACE was reported lost: %v", s.Err())
		case <-leader.Done():
			t.Fatalf("the leadership held before NOSPACE was reported lost: %v", s.Err())
		case <-permit.Done():
			t.Fatalf("the permit held before NOSPACE was reported lost: %v", s.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("the session ended under NOSPACE: %v", err)
	}

	reclaim(ctx, t, cli)

	for i, c := range cases {
		t.Run("reclaimed/"+c.name, func(t *testing.T) {
			octx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := c.op(octx, s, cli, 100+i); err != nil {
				t.Errorf("%s after the space was reclaimed: %v", c.name, err)
			}
		})
	}
	for _, r := range retry {
		if err := r.rel(ctx); err != nil {
			t.Errorf("%s after the space was reclaimed: %v", r.name, err)
		}
	}
	select {
	case <-held.Done():
		t.Fatal("the held lock was lost")
	default:
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := leader.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := permit.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// runOnce runs sch until its first tick has run, and returns what Run
// returned.
func runOnce(ctx context.Context, s *session.Session, sch *schedule.Schedule) error {
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	ran := false
	err := sch.Run(rctx, s, func(context.Context, schedule.Tick) error {
		ran = true
		stop()
		return nil
	})
	if ran {
		return nil
	}
	return err
}

// fill writes big values under keys of their own until etcd raises the
// NOSPACE alarm.
func fill(ctx context.Context, t *testing.T, cli *clientv3.Client) {
	t.Helper()
	val := strings.Repeat("x", 128<<10)
	for i := 0; ; i++ {
		_, err := cli.Put(ctx, fmt.Sprintf("nospace-fill/%d", i), val)
		if err == nil {
			continue
		}
		if !errors.Is(err, session.ErrNoSpace) && !strings.Contains(err.Error(), "database space exceeded") {
			t.Fatalf("filling: %v", err)
		}
		break
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) == 0 || alarms.Alarms[0].Alarm != etcdserverpb.AlarmType_NOSPACE {
		t.Fatalf("after filling: alarms %v %v, want NOSPACE", alarms, err)
	}
}

// reclaim does what an operator does: delete the filler, compact,
// defragment, and disarm the alarm.
func reclaim(ctx context.Context, t *testing.T, cli *clientv3.Client) {
	t.Helper()
	resp, err := cli.Delete(ctx, "nospace-fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete the filler under NOSPACE: %v", err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for _, ep := range cli.Endpoints() {
		if _, err := cli.Defragment(ctx, ep); err != nil {
			t.Fatal(err)
		}
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alarms.Alarms {
		if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm}); err != nil {
			t.Fatal(err)
		}
	}
}
