package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// holder is what the lock, RWMutex, semaphore and election workloads
// share: something acquired with a fencing token, an owner guard and a
// Done channel.
type holder interface {
	acquire(ctx context.Context) (token int64, err error)
	guard() []clientv3.Cmp
	done() <-chan struct{}
	release(ctx context.Context) error
}

// holdSpec describes one workload of fenced holds.
type holdSpec struct {
	kind  string // "lock", "rlock", "sem", "elect"
	name  string
	space keys.Space // where the holders' keys live, for the checks
	// make returns a fresh holder on session s.
	make func(s *session.Session) holder
	// blockers are the parts of space whose keys, when older than the
	// holder's, forbid its fenced write (checked from etcd's log).
	blockers []string
	// capacity > 0 makes the check weighted instead: the weights of the
	// holder's key and every older key in blockers must fit.
	capacity int64
	// exclusive: one holder at a time, so tokens of accepted writes must
	// never go backwards and a loss must be known before a successor.
	exclusive bool
	// leaderKey, for an election, replaces blockers: at every accepted
	// write's revision the leader key must exist, written at the writer's
	// token (a leadership is its leader key's term).
	leaderKey string
}

// runHolds runs one client's loop of acquire, fenced write, release, for
// as long as ctx lives, on the process's shared session (a new one
// whenever it was lost).
func runHolds(ctx context.Context, e *Env, c *Client, spec holdSpec, holding *atomic.Int32) {
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		holdLoop(ctx, e, c, s, spec, holding)
		if s.Err() == nil {
			e.checkNoKeysLeft(c, s, spec)
		}
	}
}

func holdLoop(ctx context.Context, e *Env, c *Client, s *session.Session, spec holdSpec, holding *atomic.Int32) {
	for ctx.Err() == nil && s.Err() == nil {
		h := spec.make(s)
		call := time.Now()
		tok, err := h.acquire(ctx)
		op := Op{Client: c.ID, Kind: spec.kind, Name: spec.name, Op: "acquire", Call: call, Return: time.Now(), Token: tok}
		if err != nil {
			op.Outcome, op.Detail = "fail", err.Error()
			e.Hist.Add(op)
			if !errors.Is(err, context.Canceled) && s.Err() == nil {
				pause(ctx, 20*time.Millisecond)
			}
			continue
		}
		op.Outcome = "ok"
		e.Hist.Add(op)
		holding.Add(1)

		// Watch for loss while holding; a loss before release is recorded
		// with the moment Done fired, for the "Done before successor"
		// check.
		released := make(chan struct{})
		go func() {
			select {
			case <-h.done():
				select {
				case <-released:
				default:
					e.Hist.Add(Op{Client: c.ID, Kind: spec.kind, Name: spec.name, Op: "lost", Call: time.Now(), Return: time.Now(), Token: tok, Outcome: "ok", Detail: errString(s.Err())})
				}
			case <-released:
			}
		}()

		// A paused process resumes here, not knowing it was paused.
		c.Stall(e)
		e.fencedWrite(ctx, c, spec, tok, h.guard())
		pause(ctx, time.Duration(e.Rand(20))*time.Millisecond)
		if e.Rand(4) == 0 {
			e.fencedWrite(ctx, c, spec, tok, h.guard())
		}
		close(released)
		holding.Add(-1)
		// Release is safe to retry, and an application would retry it
		// until it succeeds or the session (and so the key) is gone.
		relCall := time.Now()
		for try := 0; ; try++ {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			err = h.release(rctx)
			cancel()
			if err == nil || s.Err() != nil || try == 10 {
				break
			}
		}
		rop := Op{Client: c.ID, Kind: spec.kind, Name: spec.name, Op: "release", Call: relCall, Return: time.Now(), Token: tok, Outcome: "ok"}
		if err != nil {
			rop.Outcome, rop.Detail = "fail", err.Error()
		}
		e.Hist.Add(rop)
	}
}

// fencedWrite writes the holder's token to the data key of its name,
// guarded by the holder's own Cmp, as an application would guard its
// writes. Accepted writes are checked against etcd's history.
func (e *Env) fencedWrite(ctx context.Context, c *Client, spec holdSpec, tok int64, guard []clientv3.Cmp) {
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	call := time.Now()
	resp, err := c.Cli.Txn(wctx).If(guard...).Then(clientv3.OpPut(e.dataKey(spec), fmt.Sprintf("%d/%d", c.ID, tok))).Commit()
	op := Op{Client: c.ID, Kind: spec.kind, Name: spec.name, Op: "write", Call: call, Return: time.Now(), Token: tok}
	switch {
	case err != nil:
		op.Outcome, op.Detail = "fail", err.Error()
	case resp.Succeeded:
		op.Outcome, op.Rev = "ok", resp.Header.Revision
	default:
		op.Outcome, op.Rev = "rejected", resp.Header.Revision
	}
	e.Hist.Add(op)
}

func (e *Env) dataKey(spec holdSpec) string {
	return e.Root + "data/" + spec.kind + "/" + keys.Escape(spec.name)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// checkHolds checks a hold workload's invariants against etcd's history:
//   - accepted fenced writes, in revision order, never carry a token older
//     than one already accepted;
//   - for exclusive kinds, at every accepted write's revision the writer's
//     key is the oldest holder key: at most one holder, in etcd's order;
//   - a holder whose loss was not caused by a pause or a revocation sees
//     Done fire before a successor's acquire returns.
func checkHolds(e *Env, spec holdSpec, exempt func(op Op) bool) {
	ops := e.Hist.Ops()
	var writes []Op
	for _, o := range ops {
		if o.Kind == spec.kind && o.Name == spec.name && o.Op == "write" && o.Outcome == "ok" {
			writes = append(writes, o)
		}
	}
	sortByRev(writes)
	var maxTok int64
	for _, w := range writes {
		if spec.exclusive && w.Token < maxTok {
			e.Stats.Violation("%s %q: write with token %d accepted at rev %d after token %d", spec.kind, spec.name, w.Token, w.Rev, maxTok)
		}
		maxTok = max(maxTok, w.Token)
	}
	if e.Log.Complete() {
		rp := NewReplay(e.Log.Events())
		for _, w := range writes {
			if spec.leaderKey != "" {
				if l := rp.At(w.Rev, spec.leaderKey); len(l) != 1 || l[0].Key != spec.leaderKey || l[0].Rev != w.Token {
					e.Stats.Violation("%s %q: write by token %d accepted at rev %d while the leader key was %v", spec.kind, spec.name, w.Token, w.Rev, l)
				}
				continue
			}
			var older []Event
			for _, p := range spec.blockers {
				for _, ev := range rp.At(w.Rev, spec.space.Part(p)) {
					if ev.CreateRev < w.Token || (spec.capacity > 0 && ev.CreateRev == w.Token) {
						older = append(older, ev)
					}
				}
			}
			if spec.capacity > 0 {
				var sum int64
				for _, ev := range older {
					sum += weightOf(ev.Value)
				}
				if sum > spec.capacity {
					e.Stats.Violation("%s %q: write by token %d accepted at rev %d while the line up to it weighed %d > capacity %d",
						spec.kind, spec.name, w.Token, w.Rev, sum, spec.capacity)
				}
				continue
			}
			if len(older) > 0 {
				e.Stats.Violation("%s %q: write by token %d accepted at rev %d while %q (token %d) was ahead of it",
					spec.kind, spec.name, w.Token, w.Rev, older[0].Key, older[0].CreateRev)
			}
		}
	}
	// Done before successor.
	var acquires []Op
	for _, o := range ops {
		if o.Kind == spec.kind && o.Name == spec.name && o.Op == "acquire" && o.Outcome == "ok" {
			acquires = append(acquires, o)
		}
	}
	for _, o := range ops {
		if o.Kind != spec.kind || o.Name != spec.name || o.Op != "lost" || (exempt != nil && exempt(o)) {
			continue
		}
		if !strings.Contains(o.Detail, "not renewed in time") {
			continue // revoked or deleted from outside: nobody can know before the server
		}
		if !spec.exclusive {
			continue
		}
		var next *Op
		for i, a := range acquires {
			if a.Token > o.Token && (next == nil || a.Token < next.Token) {
				next = &acquires[i]
			}
		}
		if next == nil {
			continue
		}
		if !o.Return.Before(next.Return) {
			e.Stats.Violation("%s %q: token %d learned of its loss at %s, after successor %d was granted at %s",
				spec.kind, spec.name, o.Token, o.Return.Format("15:04:05.000"), next.Token, next.Return.Format("15:04:05.000"))
		} else {
			e.Stats.Figure("loss lead over successor", next.Return.Sub(o.Return))
		}
	}
}

func sortByRev(ops []Op) {
	for i := 1; i < len(ops); i++ {
		for j := i; j > 0 && ops[j].Rev < ops[j-1].Rev; j-- {
			ops[j], ops[j-1] = ops[j-1], ops[j]
		}
	}
}

// checkNoKeysLeft runs when a client's loop ends with its session alive:
// every acquire has been released or cancelled, so no key of the
// workload's may remain on the session's lease once any cleanup that had
// to wait for etcd (Session.Retire) has run.
func (e *Env) checkNoKeysLeft(c *Client, s *session.Session, spec holdSpec) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var left []string
	for {
		left = left[:0]
		resp, err := e.Admin.Get(ctx, spec.space.Base(), clientv3.WithPrefix())
		if err == nil {
			for _, kv := range resp.Kvs {
				if clientv3.LeaseID(kv.Lease) == s.Lease() {
					left = append(left, string(kv.Key))
				}
			}
			if len(left) == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			if len(left) > 0 {
				e.Stats.Violation("%s %q: client %d left keys %v behind after its loop ended", spec.kind, spec.name, c.ID, left)
			}
			return
		case <-s.Done():
			return // the lease takes them
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// weightOf reads a semaphore request's weight from its key's value.
func weightOf(v string) int64 {
	rec, _ := keys.DecodeRecord([]byte(v))
	return rec.Weight()
}
