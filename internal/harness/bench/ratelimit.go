package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/ratelimit"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RateLimit is n processes (each its own client and session) with four
// callers each waiting for events in a loop, against a limit of limit per
// second that they want more than: coord's limiter beside the naive one,
// which makes one Txn per event. ops/s says how close each gets to the
// limit, RPCs/op what an event costs.
func RateLimit(n int, limit int64) Case {
	lim := ratelimit.Per(limit, time.Second)
	burst := max(1, limit/20)
	return Case{
		Primitive: "ratelimit", Name: fmt.Sprintf("%d processes, %d/s", n, limit), Etcd: "one Txn per event",
		Measured: "Wait, from the call to the grant",
		coord: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			counter := etcdtest.NewCounter()
			clis, err := env.clientsN(n, counter)
			if err != nil {
				return Result{}, err
			}
			prefix := env.prefix("ratelimit")
			ls := make([]*ratelimit.Limiter, n)
			for i, cli := range clis {
				s, err := coordSession(ctx, cli, prefix)
				if err != nil {
					return Result{}, err
				}
				defer s.Close()
				ls[i] = ratelimit.New(s, "bench", lim, burst, ratelimit.WithClockSkew(0))
			}
			var lat benchutil.Latencies
			return drive(env, 4*n, d, 0, counter, &lat, func(w int) error {
				defer lat.Since(time.Now())
				return ls[w%n].Wait(ctx)
			})
		},
		etcd: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			counter := etcdtest.NewCounter()
			clis, err := env.clientsN(n, counter)
			if err != nil {
				return Result{}, err
			}
			key := env.prefix("naive") + "bench"
			ls := make([]*Naive, n)
			for i, cli := range clis {
				ls[i] = NewNaive(cli, key, lim, burst, nil, nil)
			}
			var lat benchutil.Latencies
			return drive(env, 4*n, d, 0, counter, &lat, func(w int) error {
				defer lat.Since(time.Now())
				return ls[w%n].Wait(ctx)
			})
		},
	}
}

// Naive is the baseline coord's rate limiter is measured against: the
// same cap, kept the obvious way. The timeline is cut into epochs that
// hold (limit+burst)/(q+1) events each, q of them an interval (so no
// window of the interval meets more than q+1), and one key holds the
// current epoch and its count; every event is one compare-and-swap Txn
// that adds one to it, retried on a conflict with what the Txn read. No
// batching, no local stock: one Txn per event, plus one per conflict.
type Naive struct {
	cli    *clientv3.Client
	key    string
	epoch  int64
	budget int64
	now    func() time.Time
	sleep  func(ctx context.Context, until time.Time) error

	mu    sync.Mutex
	k     int64 // the epoch the count is of
	taken int64
	mod   int64
}

// NewNaive returns a naive limiter on key. now and sleep are its clock
// (nil: the system's).
func NewNaive(cli *clientv3.Client, key string, limit ratelimit.Limit, burst int64, now func() time.Time,
	sleep func(ctx context.Context, until time.Time) error) *Naive {
	q := max(1, min(limit.Events/burst, 64, int64(limit.Interval/time.Millisecond)))
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = func(ctx context.Context, until time.Time) error {
			t := time.NewTimer(time.Until(until))
			defer t.Stop()
			select {
			case <-t.C:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return &Naive{cli: cli, key: key, epoch: (int64(limit.Interval) + q - 1) / q, budget: (limit.Events + burst) / (q + 1),
		now: now, sleep: sleep, k: -1}
}

// Wait blocks until one event is granted, one Txn at a time.
func (n *Naive) Wait(ctx context.Context) error {
	for {
		now := n.now().UnixNano()
		k := now / n.epoch
		n.mu.Lock()
		taken, mod := n.taken, n.mod
		switch {
		case n.k < k:
			taken = 0
		case n.k > k:
			taken = n.budget // a clock behind: wait
		}
		n.mu.Unlock()
		if taken >= n.budget {
			if err := n.sleep(ctx, time.Unix(0, (k+1)*n.epoch)); err != nil {
				return err
			}
			continue
		}
		resp, err := n.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(n.key), "=", mod)).
			Then(clientv3.OpPut(n.key, fmt.Sprintf("%d %d", k, taken+1))).
			Else(clientv3.OpGet(n.key)).
			Commit()
		if err != nil {
			return err
		}
		n.mu.Lock()
		if resp.Succeeded {
			n.k, n.taken, n.mod = k, taken+1, resp.Header.Revision
			n.mu.Unlock()
			if n.now().UnixNano()/n.epoch == k {
				return nil
			}
			continue // the answer came after the epoch ended: not granted
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			f := strings.Fields(string(kvs[0].Value))
			if len(f) == 2 {
				n.k, _ = strconv.ParseInt(f[0], 10, 64)
				n.taken, _ = strconv.ParseInt(f[1], 10, 64)
			}
			n.mod = kvs[0].ModRevision
		} else {
			n.k, n.taken, n.mod = -1, 0, 0
		}
		n.mu.Unlock()
	}
}
