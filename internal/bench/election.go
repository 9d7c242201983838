package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/benchutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// candidate is one participant of an election, of either implementation.
type candidate struct {
	campaign func(ctx context.Context) error
	resign   func(ctx context.Context) error
	close    func()
}

func electionCase(n int) Case {
	return Case{
		Primitive: "election", Name: "resign → next leader, 4 candidates", Etcd: "concurrency.Election",
		Measured: "from the leader's Resign call to the next candidate's Campaign returning",
		coord: handoffRunner(n, func(ctx context.Context, cli *clientv3.Client, prefix string) (candidate, error) {
			s, err := coordSession(ctx, cli, prefix)
			if err != nil {
				return candidate{}, err
			}
			e := election.New(s, "bench")
			return candidate{
				campaign: func(ctx context.Context) error { return e.Campaign(ctx, "v") },
				resign:   e.Resign,
				close:    func() { s.Close() },
			}, nil
		}),
		etcd: handoffRunner(n, func(ctx context.Context, cli *clientv3.Client, prefix string) (candidate, error) {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(15), concurrency.WithContext(ctx))
			if err != nil {
				return candidate{}, err
			}
			e := concurrency.NewElection(s, prefix+"bench")
			return candidate{
				campaign: func(ctx context.Context) error { return e.Campaign(ctx, "v") },
				resign:   e.Resign,
				close:    func() { s.Close() },
			}, nil
		}),
	}
}

// handoffRunner has n candidates pass the leadership around: each leader
// resigns at once and campaigns again, at the back of the line.
func handoffRunner(n int, mk func(ctx context.Context, cli *clientv3.Client, prefix string) (candidate, error)) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter := etcdtest.NewCounter()
		clis, err := env.clientsN(n, counter)
		if err != nil {
			return Result{}, err
		}
		prefix := env.prefix("election")
		cs := make([]candidate, n)
		for i, cli := range clis {
			if cs[i], err = mk(ctx, cli, prefix); err != nil {
				return Result{}, err
			}
			defer cs[i].close()
		}
		var (
			lat      benchutil.Latencies
			handoffs atomic.Int64
			released atomic.Int64 // unix nanos of the last Resign call
			failed   atomic.Pointer[error]
			wg       sync.WaitGroup
		)
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		counter.Reset()
		start := time.Now()
		// The result is taken at the deadline, before the candidates still
		// in line are cancelled and clean up.
		var res Result
		stop := time.AfterFunc(d, func() {
			res = Result{Ops: int(handoffs.Load()), Elapsed: time.Since(start), RPCs: counter.Total()}
			cancel()
		})
		defer stop.Stop()
		for _, c := range cs {
			wg.Go(func() {
				for runCtx.Err() == nil {
					if err := c.campaign(runCtx); err != nil {
						if runCtx.Err() == nil {
							failed.Store(&err)
							cancel()
						}
						return
					}
					if r := released.Load(); r != 0 {
						lat.Add(time.Duration(time.Now().UnixNano() - r))
						handoffs.Add(1)
					}
					released.Store(time.Now().UnixNano())
					if err := c.resign(ctx); err != nil {
						failed.Store(&err)
						cancel()
						return
					}
				}
			})
		}
		wg.Wait()
		if e := failed.Load(); e != nil {
			return Result{}, *e
		}
		res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
		return res, nil
	}
}
