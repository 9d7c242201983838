package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// candidate is one participant of an election, of either implementation.
// letGo ends its leadership: a Resign, or (for failover) the end of its
// session, as a crash the server detects would end it, after which it
// campaigns again with a new session.
type candidate struct {
	campaign func(ctx context.Context) error
	letGo    func(ctx context.Context) error
	close    func()
}

type candidateMaker func(ctx context.Context, cli *clientv3.Client, prefix string, revoke bool) (candidate, error)

func coordCandidate(ctx context.Context, cli *clientv3.Client, prefix string, revoke bool) (candidate, error) {
	var s *session.Session
	var e *election.Election
	renew := func(ctx context.Context) error {
		var err error
		if s, err = coordSession(ctx, cli, prefix); err != nil {
			return err
		}
		e = election.New(s, "bench")
		return nil
	}
	if err := renew(ctx); err != nil {
		return candidate{}, err
	}
	c := candidate{
		campaign: func(ctx context.Context) error { return e.Campaign(ctx, "v") },
		letGo:    func(ctx context.Context) error { return e.Resign(ctx) },
		close:    func() { s.Close() },
	}
	if revoke {
		c.letGo = func(ctx context.Context) error { s.Close(); return renew(ctx) }
	}
	return c, nil
}

func etcdCandidate(ctx context.Context, cli *clientv3.Client, prefix string, revoke bool) (candidate, error) {
	var s *concurrency.Session
	var e *concurrency.Election
	renew := func(ctx context.Context) error {
		var err error
		if s, err = concurrency.NewSession(cli, concurrency.WithTTL(15), concurrency.WithContext(ctx)); err != nil {
			return err
		}
		e = concurrency.NewElection(s, prefix+"bench")
		return nil
	}
	if err := renew(ctx); err != nil {
		return candidate{}, err
	}
	c := candidate{
		campaign: func(ctx context.Context) error { return e.Campaign(ctx, "v") },
		letGo:    func(ctx context.Context) error { return e.Resign(ctx) },
		close:    func() { s.Close() },
	}
	if revoke {
		c.letGo = func(ctx context.Context) error { s.Close(); return renew(context.Background()) }
	}
	return c, nil
}

// Failover is the leadership passed around n candidates by the end of the
// leader's session (revoked, as a server-detected crash is), against
// etcd's concurrency.Election.
func Failover(n int) Case {
	return Case{
		Primitive: "election", Name: fmt.Sprintf("session revoked → next leader, %d candidates", n), Etcd: "concurrency.Election",
		Measured: "from the leader's session ending to the next candidate's Campaign returning",
		coord:    handoffRunner(n, coordCandidate, true),
		etcd:     handoffRunner(n, etcdCandidate, true),
	}
}

// Campaign is an uncontended Campaign and Resign, against etcd's.
func Campaign() Case {
	mk := func(m candidateMaker) contender {
		return func(ctx context.Context, cli *clientv3.Client, prefix string) (acquirer, func(), error) {
			c, err := m(ctx, cli, prefix, false)
			if err != nil {
				return nil, nil, err
			}
			return func(ctx context.Context) (func(context.Context) error, error) {
				return c.letGo, c.campaign(ctx)
			}, c.close, nil
		}
	}
	return Case{
		Primitive: "election", Name: "campaign with no leader", Etcd: "concurrency.Election",
		Measured: "Campaign, from the call to leading (then Resign)",
		coord:    acquireRunner(1, mk(coordCandidate)),
		etcd:     acquireRunner(1, mk(etcdCandidate)),
	}
}

// Election is the leadership passed around n candidates by Resign,
// against etcd's concurrency.Election.
func Election(n int) Case {
	return Case{
		Primitive: "election", Name: fmt.Sprintf("resign → next leader, %d candidates", n), Etcd: "concurrency.Election",
		Measured: "from the leader's Resign call to the next candidate's Campaign returning",
		coord:    handoffRunner(n, coordCandidate, false),
		etcd:     handoffRunner(n, etcdCandidate, false),
	}
}

// handoffRunner has n candidates pass the leadership around: each leader
// resigns at once and campaigns again, at the back of the line.
func handoffRunner(n int, mk candidateMaker, revoke bool) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter := etcdtest.NewCounter()
		clis, err := env.clientsN(n, counter)
		if err != nil {
			return Result{}, err
		}
		prefix := env.prefix("election")
		cs := make([]candidate, n)
		for i, cli := range clis {
			if cs[i], err = mk(ctx, cli, prefix, revoke); err != nil {
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
		// The clock starts when the first leader leads (a short run on a
		// loaded machine could otherwise end before any handoff), and the
		// result is taken at the deadline, before the candidates still in
		// line are cancelled and clean up.
		var res Result
		led, handed := make(chan struct{}), make(chan struct{})
		var first, firstHandoff sync.Once
		wg.Go(func() {
			select {
			case <-led:
			case <-runCtx.Done():
				return
			}
			win := env.open(counter)
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-runCtx.Done():
				return
			}
			// A run that has seen no handoff yet (a short one on a loaded
			// machine) goes on to its first: a rate needs one.
			select {
			case <-handed:
			case <-runCtx.Done():
				return
			case <-time.After(time.Minute):
			}
			res = win.result(int(handoffs.Load()))
			cancel()
		})
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
						firstHandoff.Do(func() { close(handed) })
					}
					first.Do(func() { close(led) })
					released.Store(time.Now().UnixNano())
					if err := c.letGo(ctx); err != nil {
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

// Transfer is the leadership moved on request to a chosen candidate among
// n replicas running election.Run: an observer's RequestTransfer names a
// candidate that is not next in line (the newest), the leader's fn is
// cancelled and returns, Run hands over, and the target's fn starts.
// etcd's concurrency.Election has no transfer: its side is a Resign and
// the next candidate's Campaign returning, the closest it has.
func Transfer(n int) Case {
	return Case{
		Primitive: "election", Name: fmt.Sprintf("transfer → chosen leader's Run fn, %d candidates", n), Etcd: "concurrency.Election",
		Measured: "coord: from RequestTransfer to the chosen candidate's Run fn starting; etcd: from Resign to the next Campaign returning",
		coord:    transferRunner(n, false),
		etcd:     handoffRunner(n, etcdCandidate, false),
	}
}

// RunHandover is the leadership passed on by Run when the leader's fn
// returns (Run hands over to the next in line), among n replicas.
func RunHandover(n int) Case {
	return Case{
		Primitive: "election", Name: fmt.Sprintf("Run fn returns → next Run fn, %d candidates", n), Etcd: "concurrency.Election",
		Measured: "coord: from the leader's fn returning to the next replica's fn starting; etcd: from Resign to the next Campaign returning",
		coord:    transferRunner(n, true),
		etcd:     handoffRunner(n, etcdCandidate, false),
	}
}

// transferRunner runs n replicas of election.Run. With resign, each leader's
// fn returns at once and Run hands over to the next; without, each fn
// runs until a transfer, requested by an observer, moves the leadership
// to the newest candidate.
func transferRunner(n int, resign bool) runner {
	return func(ctx context.Context, env *Env, d time.Duration) (Result, error) {
		counter := etcdtest.NewCounter()
		clis, err := env.clientsN(n, counter)
		if err != nil {
			return Result{}, err
		}
		// The observer that asks for transfers is the benchmark's, not
		// counted.
		obCli, err := env.client(nil)
		if err != nil {
			return Result{}, err
		}
		prefix := env.prefix("election")
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		type start struct {
			value string
			at    time.Time
			prev  int64 // unix nanos when the previous leader's fn returned
		}
		ob := election.NewObserver(obCli, "bench", election.WithPrefix(prefix))
		started := make(chan start, n)
		var ended atomic.Int64 // unix nanos of the last fn return (resign)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			value := fmt.Sprintf("r%d", i)
			wg.Go(func() {
				err := election.Run(runCtx, clis[i], "bench", value, func(fctx context.Context) error {
					started <- start{value, time.Now(), ended.Load()}
					if !resign {
						<-fctx.Done()
					} else {
						// Return once every other replica is back in
						// line, so a successor is always waiting (else
						// this would time Run's backoff, not a handover).
						waitLine(fctx, ob, n)
					}
					ended.Store(time.Now().UnixNano())
					return nil
				}, election.WithPrefix(prefix), election.WithTTL(15*time.Second))
				if runCtx.Err() == nil {
					errs <- err
				}
			})
		}
		defer wg.Wait()
		defer cancel()
		wait := func(value string) (start, error) {
			for {
				select {
				case s := <-started:
					if value == "" || s.value == value {
						return s, nil
					}
				case err := <-errs:
					return start{}, err
				case <-time.After(10 * time.Second):
					return start{}, fmt.Errorf("no leader within 10s")
				}
			}
		}
		// Everyone in line before the clock starts.
		if _, err := wait(""); err != nil {
			return Result{}, err
		}
		waitLine(ctx, ob, n)
		var lat benchutil.Latencies
		ops := 0
		win := env.open(counter)
		for time.Since(win.start) < d {
			if resign {
				st, err := wait("")
				if err != nil {
					return Result{}, err
				}
				if st.prev != 0 && ops > 0 {
					lat.Add(st.at.Sub(time.Unix(0, st.prev)))
				}
				ops++
				continue
			}
			cs, err := ob.Candidates(ctx)
			if err != nil {
				return Result{}, err
			}
			target := cs[len(cs)-1] // the newest: never the one FIFO picks next
			if target.Leader || len(cs) < 2 {
				time.Sleep(time.Millisecond)
				continue
			}
			call := time.Now()
			if err := ob.RequestTransfer(ctx, target.ID); err != nil {
				continue // the leadership moved meanwhile
			}
			st, err := wait(target.Value)
			if err != nil {
				return Result{}, err
			}
			lat.Add(st.at.Sub(call))
			ops++
		}
		res := win.result(ops)
		res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
		return res, nil
	}
}

// waitLine waits until n candidates are in line.
func waitLine(ctx context.Context, ob *election.Observer, n int) {
	for ctx.Err() == nil {
		if cs, err := ob.Candidates(ctx); err == nil && len(cs) >= n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}
