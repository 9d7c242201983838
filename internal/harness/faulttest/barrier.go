package faulttest

import (
	"context"
	"sync"
	"time"

	"github.com/coord-go/coord/barrier"
)

// barrierRun: one controller shuts and opens a gate over and over;
// waiters wait at it. A Wait that returns nil while the gate was shut the
// whole time (from before the Wait began until after it returned) is a
// false release.
type barrierRun struct {
	name string
	mu   sync.Mutex
	// shut intervals: Hold returned at [0], Release was called at [1]
	// (zero while still shut).
	shut [][2]time.Time
}

func (r *barrierRun) control(ctx context.Context, e *Env, c *Client) {
	b := barrier.New(c.Cli, r.name, barrier.WithPrefix(e.Root))
	for ctx.Err() == nil {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := b.Hold(hctx)
		cancel()
		if err != nil {
			continue
		}
		r.mu.Lock()
		r.shut = append(r.shut, [2]time.Time{time.Now()})
		i := len(r.shut) - 1
		r.mu.Unlock()
		pause(ctx, time.Duration(50+e.Rand(150))*time.Millisecond)
		r.mu.Lock()
		r.shut[i][1] = time.Now()
		r.mu.Unlock()
		for {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			err := b.Release(rctx)
			cancel()
			if err == nil || rctx.Err() == nil && ctx.Err() != nil {
				break
			}
		}
		pause(ctx, time.Duration(20+e.Rand(50))*time.Millisecond)
	}
}

func (r *barrierRun) wait(ctx context.Context, e *Env, c *Client) {
	b := barrier.New(c.Cli, r.name, barrier.WithPrefix(e.Root))
	for ctx.Err() == nil {
		call := time.Now()
		err := b.Wait(ctx)
		ret := time.Now()
		op := Op{Client: c.ID, Kind: "barrier", Name: r.name, Op: "wait", Call: call, Return: ret, Outcome: "ok"}
		if err != nil {
			op.Outcome, op.Detail = "fail", err.Error()
		}
		e.Hist.Add(op)
		pause(ctx, time.Duration(e.Rand(30))*time.Millisecond)
	}
}

func (r *barrierRun) check(e *Env) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, o := range e.Hist.Ops() {
		if o.Kind != "barrier" || o.Op != "wait" || o.Outcome != "ok" {
			continue
		}
		n++
		for _, s := range r.shut {
			if s[0].Before(o.Call) && (s[1].IsZero() || o.Return.Before(s[1])) {
				e.Stats.Violation("barrier: Wait by client %d returned at %s while the gate was shut from %s until %s",
					o.Client, o.Return.Format("15:04:05.000"), s[0].Format("15:04:05.000"), s[1].Format("15:04:05.000"))
			}
		}
	}
	e.Stats.mu.Lock()
	e.Stats.Faults["barrier-waits"] = n
	e.Stats.mu.Unlock()
}
