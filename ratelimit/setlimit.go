package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxRetries bounds the loops that retry when the state changed under
// them.
const maxRetries = 16

// SetLimit changes the limit for every user of the limiter, keeping the
// burst. The change takes effect at one moment for all of them, stored
// with it (State's Since): after every epoch that holds reservations
// under the old limit, and one epoch more, so that what was reserved
// stays valid and no window holds more than the old cap before it, the
// new cap after it, or the larger of the two across it. From then on
// every user follows the stored limit, whatever it was made with. It
// costs one read and one Txn, and returns an error wrapping ErrInvalid for
// a limit New would refuse (a burst above it included).
func (l *Limiter) SetLimit(ctx context.Context, limit Limit) error {
	return l.set(ctx, func(c *config) { c.Limit, c.Interval = limit.Events, int64(limit.Interval) })
}

// SetBurst changes the burst for every user of the limiter, keeping the
// limit, as SetLimit does. A waiting request for more events than the new
// burst fails with ErrTooLarge.
func (l *Limiter) SetBurst(ctx context.Context, burst int64) error {
	return l.set(ctx, func(c *config) { c.Burst = burst })
}

func (l *Limiter) set(ctx context.Context, change func(*config)) error {
	if err := l.usable(ctx, 1); err != nil {
		return err
	}
	cli := l.s.Client()
	for range maxRetries {
		resp, err := cli.Get(ctx, l.stateKey())
		if err != nil {
			return l.wrap(l.cause(err))
		}
		now := l.now()
		var st *state
		var mod int64
		if len(resp.Kvs) == 0 {
			c := l.ctor
			change(&c)
			if err := c.check(); err != nil {
				return l.wrap(err)
			}
			if st, err = fresh(c, now); err != nil {
				return l.wrap(err)
			}
			st.Set = true
		} else {
			mod = resp.Kvs[0].ModRevision
			if st, err = decodeState(resp.Kvs[0].Value); err != nil {
				return l.wrap(err)
			}
			c := st.config
			change(&c)
			if err := c.check(); err != nil {
				return l.wrap(err)
			}
			if c == st.config && st.Set {
				return nil
			}
			if err := st.change(c, now); err != nil {
				return l.wrap(err)
			}
		}
		txn, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(l.stateKey()), "=", mod)).
			Then(clientv3.OpPut(l.stateKey(), st.encode())).
			Commit()
		if err != nil {
			return l.wrap(l.cause(err))
		}
		l.s.Metrics().RateLimitTxn(l.name, "set", map[bool]string{true: "ok", false: "conflict"}[txn.Succeeded])
		if txn.Succeeded {
			l.mu.Lock()
			if txn.Header.Revision > l.stMod {
				l.st, l.stMod = st, txn.Header.Revision
			}
			l.kick() // waiters re-plan on the new limit
			l.mu.Unlock()
			l.s.Logger().Info("coord rate limit set", "kind", kind, "name", l.name, "limit", st.limit().String(),
				"burst", st.Burst, "from", time.Unix(0, st.last().T0))
			return nil
		}
	}
	return l.wrap(fmt.Errorf("set limit: the limiter kept changing"))
}

// State is a snapshot of a limiter, from one read.
type State struct {
	Limit Limit
	Burst int64
	Skew  time.Duration
	// Since is when the limit in force took (or takes) effect: the start
	// of its first epoch. Zero when no state is stored yet.
	Since time.Time
	// Epoch is how the timeline is cut: limit+burst permits in every
	// Epochs+1 epochs, Epochs of them an interval. Rate is the sustained
	// rate that gives, in events per interval: the limit when the burst
	// divides it (and limit/burst ≤ 64), else a little under it.
	Epoch  time.Duration
	Epochs int64
	Rate   float64
	// Used is the permits reserved in the epoch now falls in; Ahead those
	// reserved in later epochs.
	Used, Ahead int64
	// Processes are the processes holding permits, with how many each
	// reported at its last reservation.
	Processes []Process
}

// Process is one process holding permits of a limiter.
type Process struct {
	Key      string           // its reservation key
	Lease    clientv3.LeaseID // its session's lease
	Reserved int64            // permits it held at its last reservation
	Since    time.Time        // when it started holding permits
}

// State reads the stored limit and the processes holding permits, in one
// read. A limiter nobody used yet shows the limit New was given. It
// returns ErrLimitMismatch as WaitN does.
func (l *Limiter) State(ctx context.Context) (State, error) {
	if err := l.usable(ctx, 1); err != nil {
		return State{}, err
	}
	r := l.sp.Part("r")
	resp, err := l.s.Client().Txn(ctx).Then(clientv3.OpGet(l.stateKey()),
		clientv3.OpGet(r, clientv3.WithRange(keys.RangeEnd(r)))).Commit()
	if err != nil {
		return State{}, l.wrap(l.cause(err))
	}
	now := l.now()
	st, err := fresh(l.ctor, now)
	if err != nil {
		return State{}, l.wrap(err)
	}
	stored := false
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		if st, err = decodeState(kvs[0].Value); err != nil {
			return State{}, l.wrap(err)
		}
		if !st.Set && st.config != l.ctor {
			return State{}, l.wrap(fmt.Errorf("%w: stored limit is %v, this limiter was made with %v", ErrLimitMismatch, st.config, l.ctor))
		}
		stored = true
	}
	out := stateOf(st, now)
	if !stored {
		out.Since = time.Time{}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		rec, _ := keys.DecodeRecord(kv.Value)
		out.Processes = append(out.Processes, Process{Key: string(kv.Key), Lease: clientv3.LeaseID(kv.Lease), Reserved: rec.N, Since: rec.Since})
	}
	return out, nil
}

// stateOf summarizes a state as of now.
func stateOf(st *state, now int64) State {
	g := st.last()
	out := State{Limit: st.limit(), Burst: st.Burst, Skew: time.Duration(st.Skew), Since: time.Unix(0, g.T0),
		Epoch: time.Duration(g.Epoch), Epochs: g.Period - 1,
		Rate: float64(g.PerPeriod) / float64(g.Period) * float64(st.Interval) / float64(g.Epoch)}
	for i := range st.Grids {
		gi := &st.Grids[i]
		cur := gi.index(now)
		for k := max(gi.Base, 0); k <= gi.lastTaken(); k++ {
			switch {
			case k == cur:
				out.Used += gi.taken(k)
			case k > cur:
				out.Ahead += gi.taken(k)
			}
		}
	}
	return out
}
