package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Schedule is a job run once per tick by one of n replicas, each on its
// own client and session: coord's schedule against what users build on
// etcd's concurrency.Mutex (at each tick every replica TryLocks, reads the
// last tick run and, if this one is newer, records it under the lock and
// runs). An op is a tick run; the latency columns are its lateness
// (start minus scheduled time) and RPCs/op are per tick, over every
// replica. Ticks are d/20 apart, from 50 to 100 ms; measuring starts
// two ticks after the first run.
func Schedule(n int) Case {
	return Case{
		Primitive: "schedule", Name: fmt.Sprintf("%d replicas", n), Etcd: "concurrency.Mutex + last tick",
		Measured: "lateness of each tick's run: its start minus the tick's time",
		coord:    scheduleRunner(n, coordTicks),
		etcd:     scheduleRunner(n, etcdTicks),
	}
}

// ticker runs one replica's ticks every interval until ctx ends, calling
// ran for every tick it runs.
type ticker func(ctx context.Context, cli *clientv3.Client, prefix, name string, interval time.Duration, ran func(tick time.Time)) error

func scheduleRunner(n int, replica ticker) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		interval := min(max(d/20, 50*time.Millisecond), 100*time.Millisecond)
		counter := etcdtest.NewCounter()
		clis, err := env.clientsN(n, counter)
		if err != nil {
			return Result{}, err
		}
		prefix := env.prefix("schedule")
		var lat benchutil.Latencies
		var mu sync.Mutex
		runs := map[int64]int{}
		measuring := false
		live := make(chan struct{}) // closed by the first run: the replicas are up
		var liveOnce sync.Once
		ran := func(tick time.Time) {
			late := time.Since(tick)
			liveOnce.Do(func() { close(live) })
			mu.Lock()
			defer mu.Unlock()
			if measuring {
				runs[tick.UnixNano()]++
				lat.Add(late)
			}
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i, cli := range clis {
			wg.Go(func() { errs <- replica(rctx, cli, prefix, "r"+strconv.Itoa(i), interval, ran) })
		}
		// Measure from two ticks after the first run, so that the
		// replicas' setup (sessions, watches, member keys), slow on a
		// loaded machine, is not counted as missed ticks; then d of ticks.
		setup := time.NewTimer(liveTimeout)
		defer setup.Stop()
		var early error
		select {
		case <-live:
		case <-ctx.Done():
			early = ctx.Err()
		case <-setup.C:
			early = fmt.Errorf("schedule: no tick ran in %v", liveTimeout)
		case early = <-errs:
			if early == nil {
				early = fmt.Errorf("schedule: a replica ended before any tick ran")
			}
		}
		if early != nil {
			cancel()
			wg.Wait()
			return Result{}, early
		}
		start := time.Now().Truncate(interval).Add(2 * interval)
		sleepUntil(ctx, start.Add(-interval/2))
		mu.Lock()
		measuring = true
		mu.Unlock()
		win := env.open(counter)
		sleepUntil(ctx, start.Add(d-interval/2))
		mu.Lock()
		measuring = false
		ops := len(runs)
		mu.Unlock()
		res := win.resultOver(ops, d)
		res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil && ctx.Err() == nil {
				return Result{}, err
			}
		}
		return res, nil
	}
}

// liveTimeout bounds the wait for a schedule case's first run.
const liveTimeout = 30 * time.Second

func sleepUntil(ctx context.Context, t time.Time) {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
}

func coordTicks(ctx context.Context, cli *clientv3.Client, prefix, name string, interval time.Duration, ran func(time.Time)) error {
	s, err := session.New(ctx, cli, session.WithPrefix(prefix))
	if err != nil {
		return err
	}
	defer s.Close()
	sch := schedule.New(cli, "bench", schedule.Every(interval), schedule.WithPrefix(prefix), schedule.WithReplica(name))
	err = sch.Run(ctx, s, func(_ context.Context, t schedule.Tick) error {
		ran(t.Time)
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// etcdTicks is the hand-made way: an aligned timer, TryLock, and a
// "last tick" key read and written under the lock, so a replica whose
// timer fires after another's run ended does not run the tick again.
func etcdTicks(ctx context.Context, cli *clientv3.Client, prefix, name string, interval time.Duration, ran func(time.Time)) error {
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(15), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer s.Close()
	m := concurrency.NewMutex(s, prefix+"bench-lock")
	last := prefix + "bench-last"
	for {
		tick := time.Now().Truncate(interval).Add(interval)
		sleepUntil(ctx, tick)
		if ctx.Err() != nil {
			return nil
		}
		if err := m.TryLock(ctx); err != nil {
			continue // concurrency.ErrLocked: another replica has it
		}
		resp, err := cli.Get(ctx, last)
		stamp := strconv.FormatInt(tick.UnixNano(), 10)
		if err == nil && (len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) < stamp) {
			put, err := cli.Txn(ctx).If(m.IsOwner()).Then(clientv3.OpPut(last, stamp)).Commit()
			if err == nil && put.Succeeded {
				ran(tick)
			}
		}
		m.Unlock(context.WithoutCancel(ctx))
	}
}
