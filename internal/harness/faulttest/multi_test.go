package faulttest

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The many-primitives-per-session workload: one worker per process holds
// a Mutex, a semaphore permit and an election's leadership at the same
// time, all on the process's one shared session (beside that process's
// queue Consume pool and its other workers), as the README recommends.
// It takes them in a random order with a bounded wait each, so workers
// cross each other (one holds the lock and waits for leadership while
// another leads and waits for the lock); a wait that runs out gives
// back everything taken so far and starts over. That exercises exactly
// what a shared session must get right: one hold's cleanup after a
// failed or cancelled wait never touches another hold of the session.
// The holds are judged by the same checks as the single-primitive ones
// (their kinds are multi-lock, multi-sem and multi-elect).

// multiSpecs are the three holds a multi worker takes at once.
func multiSpecs(root string) []holdSpec {
	sp := func(kind, name string) keys.Space {
		s, err := keys.New(root, kind, name)
		if err != nil {
			panic(err)
		}
		return s
	}
	return []holdSpec{
		{kind: "multi-lock", name: "multi-job", space: sp(keys.KindLock, "multi-job"), blockers: []string{"w"}, exclusive: true,
			make: func(s *session.Session) holder { return &mutexHolder{m: lock.NewMutex(s, "multi-job")} }},
		{kind: "multi-sem", name: "multi-pool", space: sp(keys.KindSemaphore, "multi-pool"), blockers: []string{"q"}, capacity: 2,
			make: func(s *session.Session) holder { return &semHolder{s: semaphore.New(s, "multi-pool", 2)} }},
		{kind: "multi-elect", name: "multi-leader", space: sp(keys.KindElection, "multi-leader"), exclusive: true,
			leaderKey: sp(keys.KindElection, "multi-leader").Single("leader"),
			make:      func(s *session.Session) holder { return &plainElectHolder{e: election.New(s, "multi-leader")} }},
	}
}

// plainElectHolder campaigns under the default rule and resigns.
type plainElectHolder struct{ e *election.Election }

func (h *plainElectHolder) acquire(ctx context.Context) (int64, error) {
	err := h.e.Campaign(ctx, "candidate")
	return h.e.Token(), err
}
func (h *plainElectHolder) guard() []clientv3.Cmp             { return []clientv3.Cmp{h.e.IsOwner()} }
func (h *plainElectHolder) done() <-chan struct{}             { return h.e.Done() }
func (h *plainElectHolder) release(ctx context.Context) error { return h.e.Resign(ctx) }

// runMulti is one process's multi worker, until ctx ends.
func runMulti(ctx context.Context, e *Env, c *Client, specs []holdSpec, holding *atomic.Int32) {
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		for ctx.Err() == nil && s.Err() == nil {
			multiRound(ctx, e, c, s, specs, holding)
		}
		if s.Err() == nil {
			for _, spec := range specs {
				e.checkNoKeysLeft(c, s, spec)
			}
		}
	}
}

type heldHold struct {
	spec     holdSpec
	h        holder
	tok      int64
	released chan struct{}
}

// multiRound takes every hold of specs in a random order, writes fenced
// by each, and gives them all back.
func multiRound(ctx context.Context, e *Env, c *Client, s *session.Session, specs []holdSpec, holding *atomic.Int32) {
	order := make([]int, len(specs))
	for i := range order {
		j := e.Rand(i + 1)
		order[i] = order[j]
		order[j] = i
	}
	var held []heldHold
	defer func() {
		for i := len(held) - 1; i >= 0; i-- {
			releaseHeld(ctx, e, c, s, held[i], holding)
		}
	}()
	for _, i := range order {
		spec := specs[i]
		h := spec.make(s)
		actx, cancel := context.WithTimeout(ctx, time.Duration(500+e.Rand(1000))*time.Millisecond)
		call := time.Now()
		tok, err := h.acquire(actx)
		cancel()
		op := Op{Client: c.ID, Kind: spec.kind, Name: spec.name, Op: "acquire", Call: call, Return: time.Now(), Token: tok}
		if err != nil {
			op.Outcome, op.Detail = "fail", err.Error()
			e.Hist.Add(op)
			if !errors.Is(err, context.DeadlineExceeded) && s.Err() == nil {
				pause(ctx, 20*time.Millisecond)
			}
			return // give back what is held and start over
		}
		op.Outcome = "ok"
		e.Hist.Add(op)
		holding.Add(1)
		hh := heldHold{spec: spec, h: h, tok: tok, released: make(chan struct{})}
		go func() {
			select {
			case <-h.done():
				select {
				case <-hh.released:
				default:
					e.Hist.Add(Op{Client: c.ID, Kind: spec.kind, Name: spec.name, Op: "lost", Call: time.Now(), Return: time.Now(), Token: tok, Outcome: "ok", Detail: errString(s.Err())})
				}
			case <-hh.released:
			}
		}()
		held = append(held, hh)
	}
	c.Stall(e)
	for _, hh := range held {
		e.fencedWrite(ctx, c, hh.spec, hh.tok, hh.h.guard())
	}
	pause(ctx, time.Duration(e.Rand(20))*time.Millisecond)
}

func releaseHeld(ctx context.Context, e *Env, c *Client, s *session.Session, hh heldHold, holding *atomic.Int32) {
	close(hh.released)
	holding.Add(-1)
	call := time.Now()
	var err error
	for try := 0; ; try++ {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		err = hh.h.release(rctx)
		cancel()
		if err == nil || s.Err() != nil || try == 10 {
			break
		}
	}
	op := Op{Client: c.ID, Kind: hh.spec.kind, Name: hh.spec.name, Op: "release", Call: call, Return: time.Now(), Token: hh.tok, Outcome: "ok"}
	if err != nil {
		op.Outcome, op.Detail = "fail", err.Error()
	}
	e.Hist.Add(op)
}
