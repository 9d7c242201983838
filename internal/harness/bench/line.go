package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// line is one lock line set up to measure handoffs at its head: a holder,
// measured waiters queued behind it on two counted clients, and n parked
// waiters behind those (on clients of their own, not counted; in a child
// process when elsewhere). Every holder, measured or the first, waits for
// a token on gate before it unlocks; closing gate lets the whole line run
// through, sending one token at a time makes one handoff at a time.
type line struct {
	n        int
	counter  *etcdtest.Counter
	warm     int64 // handoffs made before the ones measured
	last     int64 // the number of the last measured waiter's handoff
	lat      benchutil.Latencies
	released atomic.Int64 // when the holder started its Unlock, in Unix ns
	handoffs atomic.Int64
	failed   atomic.Pointer[error]
	gate     chan struct{}
	took     chan time.Duration // each handoff's latency, when one turn at a time
	warmed   chan struct{}      // closed at the warm-th handoff
	done     chan struct{}      // closed at the last one
	wg       sync.WaitGroup
	closers  []func()
	unpark   context.CancelFunc
}

// openLine sets up a line of side's lockers under a prefix of its own,
// with warm+measured+1 waiters behind its holder and n parked behind
// those; it returns once all of them are queued. turns makes the line
// report each handoff on took, for a driver that makes one at a time.
func openLine(ctx context.Context, env *Env, side string, n, warm, measured int, elsewhere, turns bool) (l *line, err error) {
	mk := lineMakers[side]
	prefix := env.prefix("line")
	m := warm + measured + 1
	parkCtx, unpark := context.WithCancel(ctx)
	l = &line{
		n: n, counter: etcdtest.NewCounter(), warm: int64(warm), last: int64(m - 1),
		gate: make(chan struct{}), warmed: make(chan struct{}), done: make(chan struct{}), unpark: unpark,
	}
	if turns {
		l.took = make(chan time.Duration, 1)
	}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	var mkOn [2]func() lineLocker
	for i := range mkOn {
		cli, err := env.client(l.counter)
		if err != nil {
			return nil, err
		}
		mkl, closeS, err := mk(ctx, cli, prefix)
		if err != nil {
			return nil, err
		}
		l.closers = append(l.closers, closeS)
		mkOn[i] = mkl
	}
	admin, err := env.client(nil)
	if err != nil {
		return nil, err
	}
	queued := func(want int) error {
		for deadline := time.Now().Add(5 * time.Minute); ; {
			resp, err := admin.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return err
			}
			if int(resp.Count) >= want {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("line: %d of %d queued", resp.Count, want)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
		}
	}
	head := mkOn[0]()
	if err := head.lock(ctx); err != nil {
		return nil, err
	}
	l.wg.Go(func() { l.hold(head) })
	for i := 1; i < m; i++ {
		w := mkOn[i%2]()
		l.wg.Go(func() {
			if err := w.lock(ctx); err != nil {
				l.failed.Store(&err)
				return
			}
			took := time.Duration(time.Now().UnixNano() - l.released.Load())
			i := l.handoffs.Add(1)
			if i > l.warm {
				l.lat.Add(took)
			}
			switch i {
			case l.warm:
				close(l.warmed)
			case l.last:
				close(l.done)
			}
			select {
			case l.took <- took: // nil when the line runs free
			default:
			}
			l.hold(w)
		})
	}
	if err := queued(m); err != nil {
		return nil, err
	}
	switch {
	case n > 0 && elsewhere:
		stop, err := parkElsewhere(env, prefix, n, side)
		if err != nil {
			return nil, err
		}
		l.closers = append(l.closers, stop)
	case n > 0:
		closeAll, err := parkOn(parkCtx, env.endpoints, prefix, n, mk)
		if err != nil {
			return nil, err
		}
		l.closers = append(l.closers, func() { unpark(); closeAll() })
	}
	if n > 0 {
		if err := queued(m + n); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// hold keeps the lock until the gate lets the holder go, then unlocks.
func (l *line) hold(w lineLocker) {
	<-l.gate
	l.released.Store(time.Now().UnixNano())
	if err := w.unlock(context.Background()); err != nil {
		l.failed.Store(&err)
	}
}

// turn makes one handoff: the holder unlocks and the next waiter takes
// the lock. It returns the handoff's latency, from the holder's Unlock
// starting to the next Lock returning.
func (l *line) turn(context.Context) (time.Duration, error) {
	l.gate <- struct{}{}
	select {
	case took := <-l.took:
		return took, nil
	case <-time.After(time.Minute):
		if e := l.failed.Load(); e != nil {
			return 0, *e
		}
		return 0, fmt.Errorf("line of %d: no handoff in a minute, after %d", l.n, l.handoffs.Load())
	}
}

// await waits for c (warmed or done) to close.
func (l *line) await(c chan struct{}, d time.Duration) error {
	select {
	case <-c:
		return nil
	case <-time.After(d + time.Minute):
		return fmt.Errorf("line: %d of %d handoffs", l.handoffs.Load(), l.last)
	}
}

// close lets the rest of the line run through, the parked waiters give
// up, and everyone's sessions close; it returns the first failure seen.
func (l *line) close() error {
	select {
	case <-l.gate:
	default:
		close(l.gate)
	}
	l.unpark()
	// The last measured holder's successor is a parked waiter, which
	// keeps the lock until it gives up; closing the line waits for the
	// measured ones only.
	l.wg.Wait()
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
	if e := l.failed.Load(); e != nil {
		return *e
	}
	return nil
}

// result is the line's latencies over the result a window measured.
func (l *line) result(res Result) Result {
	res.P50, res.P99 = l.lat.Percentile(50), l.lat.Percentile(99)
	return res
}
