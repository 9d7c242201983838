package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/semaphore"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	recipe "go.etcd.io/etcd/client/v3/experimental/recipes"
)

// The scaling cases measure one operation at a given length of the line
// (waiters behind, permits in line, claims in flight, idle consumers), so
// that rows at 0, 1,000 and 10,000 show whether its cost grows with the
// line. RPCs and bytes are counted on the measured participants' clients
// only, during the measured operations only.

// ScalingCases are the cases of the scaling table, at the lengths given.
func ScalingCases(lengths ...int) []Case {
	var cs []Case
	for _, n := range lengths {
		cs = append(cs, LockBehind(n))
	}
	for _, n := range lengths {
		cs = append(cs, SemaphoreInLine(n))
	}
	for _, n := range lengths {
		cs = append(cs, ClaimInFlight(n))
	}
	for _, n := range []int{1, 4, 16} {
		cs = append(cs, IdleConsumers(n))
	}
	return cs
}

// handoffsMeasured is how many handoffs a line case measures in a run of
// d: 1,000 at the default 2 s, so that its p99 is the tenth-worst handoff
// and not one stall; fewer in short runs (50 at least). The parked waiters
// are behind every one of them.
func handoffsMeasured(d time.Duration) int {
	return min(1000, max(50, int(500*d.Seconds())))
}

// handoffsWarming is how many handoffs a line case makes before it
// measures: the first ones after the parked waiters queued run while the
// server is still committing their keys to its backend (a 14 ms handoff
// among the first 100 at 10,000 behind, none after), which is the cost of
// parking them, not of a handoff.
func handoffsWarming(d time.Duration) int { return min(50, handoffsMeasured(d)/2) }

// LockBehind is a Mutex handoff (Unlock returned → the next Lock returns)
// with n waiters queued behind in another process, against etcd's
// concurrency.Mutex.
func LockBehind(n int) Case { return lockBehind(n, fmt.Sprintf("handoff, %d waiters behind", n), true) }

// LockBehindHere is LockBehind with the n waiters parked in the measuring
// process itself: its collector then scans their goroutines and clients
// during every handoff measured.
func LockBehindHere(n int) Case {
	return lockBehind(n, fmt.Sprintf("handoff, %d waiters behind in this process", n), false)
}

func lockBehind(n int, name string, elsewhere bool) Case {
	return Case{
		Primitive: "lock", Name: name, Etcd: "concurrency.Mutex",
		Measured: "a handoff: from the holder's Unlock returning to the next waiter's Lock returning",
		coord:    lineRunner(n, "coord", elsewhere),
		etcd:     lineRunner(n, "etcd", elsewhere),
	}
}

type lineLocker struct {
	lock, unlock func(ctx context.Context) error
}

// lineMaker makes lockers on one shared session per client.
type lineMaker func(ctx context.Context, cli *clientv3.Client, prefix string) (func() lineLocker, func(), error)

func coordLineLocker(ctx context.Context, cli *clientv3.Client, prefix string) (func() lineLocker, func(), error) {
	s, err := coordSession(ctx, cli, prefix)
	if err != nil {
		return nil, nil, err
	}
	return func() lineLocker {
		m := lock.NewMutex(s, "line")
		return lineLocker{m.Lock, m.Unlock}
	}, func() { s.Close() }, nil
}

// etcdLineLocker gives every locker a session of its own: etcd's Mutexes
// on one session share one key (etcd issue 11360), so they would not
// queue at all.
func etcdLineLocker(ctx context.Context, cli *clientv3.Client, prefix string) (func() lineLocker, func(), error) {
	var mu sync.Mutex
	var sessions []*concurrency.Session
	return func() lineLocker {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(60), concurrency.WithContext(ctx))
			if err != nil {
				fail := func(context.Context) error { return err }
				return lineLocker{fail, fail}
			}
			mu.Lock()
			sessions = append(sessions, s)
			mu.Unlock()
			m := concurrency.NewMutex(s, prefix+"line")
			return lineLocker{m.Lock, m.Unlock}
		}, func() {
			mu.Lock()
			defer mu.Unlock()
			for _, s := range sessions {
				s.Close()
			}
		}, nil
}

// lineRunner measures handoffs at the head of a line of n (see openLine):
// the holder lets go, and each waiter, once it holds the lock, unlocks at
// once; past the warming ones, each records the time since the previous
// Unlock started, and the window counts them: every measured handoff
// happens with all n parked waiters still behind. Then the parked waiters
// give up.
func lineRunner(n int, side string, elsewhere bool) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		l, err := openLine(ctx, env, side, n, handoffsWarming(d), handoffsMeasured(d), elsewhere, false)
		if err != nil {
			return Result{}, err
		}
		close(l.gate)
		if err := l.await(l.warmed, d); err != nil {
			l.close()
			return Result{}, err
		}
		win, from := env.open(l.counter), l.handoffs.Load()
		if err := l.await(l.done, d); err != nil {
			l.close()
			return Result{}, err
		}
		res := win.result(int(l.handoffs.Load() - from))
		if err := l.close(); err != nil {
			return Result{}, err
		}
		return l.result(res), nil
	}
}

// stage is one length of a scaling case, set up to make its measured
// operation one at a time, for as long as it was set up for.
type stage struct {
	counter *etcdtest.Counter                                // the measured participants' RPCs
	ops     int                                              // how many operations it is set up for; 0 for no limit
	op      func(ctx context.Context) (time.Duration, error) // one operation, and its latency
	close   func() error
}

// stageMaker sets up a stage with a line of n under env, for ops
// operations.
type stageMaker func(ctx context.Context, env *Env, n, ops int) (*stage, error)

// stageRunner is a case's side that sets up a stage of length n and makes
// its operation one after another for d (or its ops).
func stageRunner(n int, mk stageMaker, ops func(d time.Duration) int) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		st, err := mk(ctx, env, n, ops(d))
		if err != nil {
			return Result{}, err
		}
		var lat benchutil.Latencies
		res, err := drive(env, 1, d, st.ops, st.counter, &lat, func(int) error {
			t, err := st.op(ctx)
			lat.Add(t)
			return err
		})
		if cerr := st.close(); err == nil {
			err = cerr
		}
		return res, err
	}
}

// A Line is a scaling case that Interleaved measures at several lengths
// at once.
type Line struct {
	Primitive string // "lock"
	Name      string // what is measured, and what the length counts: "handoff, by waiters behind"
	Side      string // "coord", "etcd"
	open      stageMaker
}

// LockLine is a Mutex handoff with waiters behind (parked in child
// processes), on side's Mutex ("coord", or "etcd" for concurrency.Mutex).
func LockLine(side string) Line {
	return Line{Primitive: "lock", Name: "handoff, by waiters behind", Side: side,
		open: func(ctx context.Context, env *Env, n, ops int) (*stage, error) {
			l, err := openLine(ctx, env, side, n, 0, ops, true, true)
			if err != nil {
				return nil, err
			}
			return &stage{counter: l.counter, ops: ops, op: l.turn, close: l.close}, nil
		}}
}

// SemaphoreLine is an Acquire with free permits, by permits held in line.
func SemaphoreLine() Line {
	return Line{Primitive: "semaphore", Name: "acquire with free permits, by permits in line", Side: "coord", open: semaphoreStage}
}

// ClaimLine is a Claim + Ack by one consumer, by claims in flight.
func ClaimLine() Line {
	return Line{Primitive: "queue", Name: "claim + ack, by claims in flight", Side: "coord", open: claimStage}
}

// Interleaved measures line's operation at every length given, all set up
// at once and taking turns: one operation on each length in a rotating
// order, round after round, so that the server's disk, which drifts by a
// third over minutes on a small machine, weighs on every length alike.
// One length's operation runs while the others stand still (a lock line's
// holder waiting for its turn). Every length makes handoffsWarming(d)
// operations first, then handoffsMeasured(d) measured ones; the results
// are in the order of lengths. Syncs is the server's fsyncs over all
// lengths' measured operations, shared out evenly (they take turns on one
// server, so its count cannot be split by length).
func Interleaved(ctx context.Context, endpoints []string, line Line, lengths []int, d time.Duration) ([]Result, error) {
	env := &Env{endpoints: endpoints, root: fmt.Sprintf("coord-bench/%d/", time.Now().UnixNano())}
	defer env.close()
	warm, measured := handoffsWarming(d), handoffsMeasured(d)
	var stages []*stage
	closeAll := func() (first error) {
		for _, st := range stages {
			if err := st.close(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for _, n := range lengths {
		st, err := line.open(ctx, env, n, warm+measured)
		if err != nil {
			closeAll()
			return nil, err
		}
		stages = append(stages, st)
	}
	lat := make([]benchutil.Latencies, len(stages))
	el := make([]time.Duration, len(stages))
	rounds := func(k int, measuring bool) error {
		for r := range k {
			for j := range stages {
				i := (r + j) % len(stages)
				t0 := time.Now()
				t, err := stages[i].op(ctx)
				if err != nil {
					return err
				}
				if measuring {
					el[i] += time.Since(t0)
					lat[i].Add(t)
				}
			}
		}
		return nil
	}
	if err := rounds(warm, false); err != nil {
		closeAll()
		return nil, err
	}
	wins := make([]*window, len(stages))
	for i, st := range stages {
		wins[i] = env.open(st.counter)
	}
	if err := rounds(measured, true); err != nil {
		closeAll()
		return nil, err
	}
	out := make([]Result, len(stages))
	for i := range stages {
		out[i] = wins[i].resultOver(measured, el[i])
		out[i].P50, out[i].P99 = lat[i].Percentile(50), lat[i].Percentile(99)
	}
	// Every window saw every length's fsyncs from its opening: the first
	// window's count, spread over all of them, is the average.
	all := out[0].Syncs
	for i := range out {
		out[i].Syncs = all / float64(len(out))
	}
	if err := closeAll(); err != nil {
		return nil, err
	}
	return out, nil
}

// SemaphoreInLine is an uncontended Acquire and Release (free permits)
// with n permits held in the line by other processes. etcd has no
// semaphore.
func SemaphoreInLine(n int) Case {
	return Case{
		Primitive: "semaphore", Name: fmt.Sprintf("acquire with free permits, %d permits in line", n),
		Measured: "Acquire, from the call to holding the permit (then Release)",
		coord:    stageRunner(n, semaphoreStage, func(time.Duration) int { return 0 }),
	}
}

// semaphoreStage holds n permits of a semaphore on 8 other clients, and
// measures Acquire (then Release) on a counted client of its own.
func semaphoreStage(ctx context.Context, env *Env, n, _ int) (st *stage, err error) {
	prefix := env.prefix("sem")
	capacity := int64(n + 1000)
	var closers []func()
	closeAll := func() error {
		for _, c := range slices.Backward(closers) {
			c()
		}
		return nil
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	// The holders: n permits on 8 other clients, held throughout.
	per := (n + 7) / 8
	var filled sync.WaitGroup
	var ferr atomic.Pointer[error]
	for c := 0; c < 8 && c*per < n; c++ {
		cli, err := env.client(nil)
		if err != nil {
			return nil, err
		}
		s, err := coordSession(ctx, cli, prefix)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() { s.Close() })
		sem := semaphore.New(s, "line", capacity)
		for g := 0; g < 16; g++ {
			filled.Go(func() {
				for k := g; k < per && c*per+k < n; k += 16 {
					if _, err := sem.Acquire(ctx, 1); err != nil {
						ferr.Store(&err)
						return
					}
				}
			})
		}
	}
	filled.Wait()
	if e := ferr.Load(); e != nil {
		return nil, *e
	}
	counter := etcdtest.NewCounter()
	cli, err := env.client(counter)
	if err != nil {
		return nil, err
	}
	s, err := coordSession(ctx, cli, prefix)
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { s.Close() })
	sem := semaphore.New(s, "line", capacity)
	// One round first: a new process's first Acquire on a long line loads
	// the line once; the steady cost is what is measured.
	if p, err := sem.Acquire(ctx, 1); err != nil {
		return nil, err
	} else if err := p.Release(ctx); err != nil {
		return nil, err
	}
	return &stage{counter: counter, close: closeAll, op: func(ctx context.Context) (time.Duration, error) {
		t0 := time.Now()
		p, err := sem.Acquire(ctx, 1)
		if err != nil {
			return 0, err
		}
		took := time.Since(t0)
		return took, p.Release(ctx)
	}}, nil
}

// ClaimInFlight is claim + ack by one consumer with n other messages
// claimed and in flight (held by another process, with 4 KiB payloads
// that a claim must never read). The recipe queue has no claims.
func ClaimInFlight(n int) Case {
	return Case{
		Primitive: "queue", Name: fmt.Sprintf("claim + ack, %d claims in flight", n),
		Measured: "Claim + Ack by one consumer",
		coord:    stageRunner(n, claimStage, backlog),
	}
}

// claimStage has n messages claimed and held by another session, ops
// ready ones behind them, and measures Claim + Ack by a counted consumer
// of its own.
func claimStage(ctx context.Context, env *Env, n, ops int) (*stage, error) {
	prefix := env.prefix("queue")
	filler, err := env.client(nil)
	if err != nil {
		return nil, err
	}
	fq := queue.New(filler, "bench", queue.WithPrefix(prefix))
	big := make([]byte, 4<<10)
	// The in-flight messages, claimed first (priority -1) by a holder that
	// never acks them.
	if err := fill(n, func() error { _, err := fq.Enqueue(ctx, big, queue.WithPriority(-1)); return err }); err != nil {
		return nil, err
	}
	hs, err := coordSession(ctx, filler, prefix)
	if err != nil {
		return nil, err
	}
	var claimers sync.WaitGroup
	var cerr atomic.Pointer[error]
	var taken atomic.Int64
	for range 16 {
		claimers.Go(func() {
			for taken.Add(1) <= int64(n) {
				if _, err := fq.Claim(ctx, hs); err != nil {
					cerr.Store(&err)
					return
				}
			}
		})
	}
	claimers.Wait()
	if e := cerr.Load(); e != nil {
		hs.Close()
		return nil, *e
	}
	if err := fill(ops, func() error { _, err := fq.Enqueue(ctx, []byte(payload)); return err }); err != nil {
		hs.Close()
		return nil, err
	}
	counter := etcdtest.NewCounter()
	q, s, err := countedConsumer(ctx, env, prefix, counter)
	if err != nil {
		hs.Close()
		return nil, err
	}
	return &stage{counter: counter, ops: ops,
		close: func() error { s.Close(); hs.Close(); return nil },
		op: func(ctx context.Context) (time.Duration, error) {
			t0 := time.Now()
			m, err := q.Claim(ctx, s)
			if err != nil {
				return 0, err
			}
			err = m.Ack(ctx)
			return time.Since(t0), err
		}}, nil
}

// IdleConsumers is what one message costs with n consumers waiting in one
// process (one client, one session): a producer enqueues one message at a
// time and waits for it to be acked. The recipe queue wakes every waiter.
func IdleConsumers(n int) Case {
	return Case{
		Primitive: "queue", Name: fmt.Sprintf("one message, %d idle consumers in one process", n), Etcd: "recipe.Queue (Dequeue)",
		Measured: "from Enqueue to the message's Ack (or Dequeue) returning on a consumer",
		coord: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			prefix := env.prefix("queue")
			pcli, err := env.client(nil)
			if err != nil {
				return Result{}, err
			}
			pq := queue.New(pcli, "bench", queue.WithPrefix(prefix))
			counter := etcdtest.NewCounter()
			cli, err := env.client(counter)
			if err != nil {
				return Result{}, err
			}
			s, err := coordSession(ctx, cli, prefix)
			if err != nil {
				return Result{}, err
			}
			defer s.Close()
			acked := make(chan struct{}, n)
			cctx, stop := context.WithCancel(ctx)
			defer stop()
			var wg sync.WaitGroup
			for range n {
				q := queue.New(cli, "bench", queue.WithPrefix(prefix))
				wg.Go(func() {
					for cctx.Err() == nil {
						m, err := q.Claim(cctx, s)
						if err != nil {
							return
						}
						if m.Ack(ctx) == nil {
							acked <- struct{}{}
						}
					}
				})
			}
			defer wg.Wait()
			defer stop()
			return idleRound(ctx, env, d, counter, func() error { _, err := pq.Enqueue(ctx, []byte(payload)); return err }, acked)
		},
		etcd: func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
			prefix := env.prefix("recipe") + "bench"
			pcli, err := env.client(nil)
			if err != nil {
				return Result{}, err
			}
			pq := recipe.NewQueue(pcli, prefix)
			counter := etcdtest.NewCounter()
			cli, err := env.client(counter)
			if err != nil {
				return Result{}, err
			}
			acked := make(chan struct{}, n)
			var stop atomic.Bool
			var wg sync.WaitGroup
			for range n {
				q := recipe.NewQueue(cli, prefix)
				wg.Go(func() {
					for {
						if _, err := q.Dequeue(); err != nil || stop.Load() {
							return
						}
						acked <- struct{}{}
					}
				})
			}
			res, err := idleRound(ctx, env, d, counter, func() error { return pq.Enqueue(payload) }, acked)
			// The recipe's Dequeue takes no context, and crashes on a
			// closed client: wake every waiter with one last item each.
			stop.Store(true)
			for range n {
				pq.Enqueue("stop")
			}
			wg.Wait()
			return res, err
		},
	}
}

// idleRound enqueues one message at a time until d passes, waiting for
// each to be taken.
func idleRound(ctx context.Context, env *Env, d time.Duration, counter *etcdtest.Counter, enqueue func() error, acked <-chan struct{}) (Result, error) {
	// Let the consumers reach their wait before counting.
	time.Sleep(200 * time.Millisecond) // a warm-up, not a synchronization: nothing is measured yet
	var lat benchutil.Latencies
	win := env.open(counter)
	ops := 0
	for time.Since(win.start) < d {
		t0 := time.Now()
		if err := enqueue(); err != nil {
			return Result{}, err
		}
		select {
		case <-acked:
		case <-time.After(10 * time.Second):
			return Result{}, fmt.Errorf("a message was not taken within 10s")
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		lat.Since(t0)
		ops++
	}
	res := win.result(ops)
	res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
	return res, nil
}
