package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// outcome is what one commit learned.
type outcome struct {
	ok  bool
	rev int64 // the revision it committed at
	// On a conflict: the state as read (nil when absent) at mod.
	read bool
	st   *state
	mod  int64
	// lost: the reservation key is gone (the Txn did nothing).
	lost bool
	// err: a failure; unknown says the Txn may have applied.
	err     error
	unknown bool
}

// commit runs one job in one Txn and folds its outcome in. It returns
// false after a failure (not a conflict), on which the loop backs off.
//
// Getting a Txn's outcome right is what the cap rests on: a return that
// is applied twice would let an epoch's permits be reserved again. So a
// Txn whose answer was lost is resolved by the reservation key, which
// every Txn of the process rewrites (its mod revision moves only if the
// Txn applied), and when there is no key to tell, a reservation is taken
// as not applied (its permits are never used) and a return as applied
// (it is never sent again): either way a permit can be lost, never
// granted twice.
func (l *Limiter) commit(j job, final bool) bool {
	next := j.st
	if err := next.apply(j.takes); err != nil {
		j.takes = nil
	}
	next.release(j.ret)
	held := int64(0)
	for _, t := range j.takes {
		held += t.N
	}
	l.mu.Lock()
	h, _ := l.holdings()
	pres, releasing := l.pres, l.releasing
	l.mu.Unlock()
	rec := keys.Record{N: h + held}
	cmp := clientv3.Compare(clientv3.ModRevision(l.stateKey()), "=", j.mod)
	put := clientv3.OpPut(l.stateKey(), next.encode())
	ctx, cancel := context.WithTimeout(context.Background(), l.s.TTL())
	defer cancel()
	t0 := l.now()
	var o outcome
	op := "reserve"
	switch {
	case len(j.takes) == 0:
		op = "return"
	}
	switch {
	case final:
		o = l.txn(ctx, cmp, put, nil, rec)
	case pres != nil && (releasing || (j.release && len(j.takes) == 0)):
		op = "release"
		o = l.txnRelease(ctx, pres, cmp, put)
	case pres == nil && len(j.takes) > 0:
		o = l.txnCreate(ctx, cmp, put, rec)
	default:
		o = l.txn(ctx, cmp, put, pres, rec)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if d := l.now() - t0; d >= 0 {
		l.rtt = (3*l.rtt + d) / 4
	}
	m := l.s.Metrics()
	switch {
	case o.ok:
		m.RateLimitTxn(l.name, op, "ok")
		if o.rev > l.stMod {
			l.st, l.stMod = next, o.rev
		}
		var n int64
		for _, t := range j.takes {
			if g := next.grid(t.T0); g != nil {
				l.addStock(lot{p: g.params(), k: t.K, n: t.N})
				n += t.N
			}
		}
		if n > 0 {
			m.RateLimitReserved(l.name, n)
			l.wakeSleepers(l.now())
		}
		var back int64
		for _, t := range j.ret {
			back += t.N
		}
		if back > 0 {
			m.RateLimitPermits(l.name, "returned", back)
		}
		l.returning = nil
		if op == "release" {
			l.pres, l.releasing = nil, false
		}
		l.backoffN = 0
		return true
	case o.read:
		// Nothing applied: plan again on the state read.
		m.RateLimitTxn(l.name, op, "conflict")
		if o.mod > l.stMod || (o.st == nil && o.mod == 0 && l.stMod != 0) {
			l.st, l.stMod = o.st, o.mod
		}
		return true
	case o.lost:
		m.RateLimitTxn(l.name, op, "conflict")
		l.pres, l.releasing = nil, false
		if o.unknown {
			l.returning = nil // may have applied: never sent again
		}
		return true
	}
	if o.unknown {
		if op == "release" {
			l.releasing = true // only the release itself is sent again: see txnRelease
		} else {
			l.returning = nil // may have applied: never sent again
		}
	}
	if errors.Is(o.err, errConflict) {
		// The state changed and the Txn read none of it (or we cannot
		// tell): wait for the mirror to bring a newer one.
		m.RateLimitTxn(l.name, op, "conflict")
		l.stale, l.staleMod = true, j.mod
		return true
	}
	m.RateLimitTxn(l.name, op, "error")
	l.failWaiters(l.wrap(o.err))
	l.backoffN++
	return false
}

// errConflict: a compare failed and the new state must come from the
// mirror (the Txn read none).
var errConflict = errors.New("ratelimit: state changed")

// txn is one reservation or return: the state's CAS and, with a
// reservation key, its rewrite guarded by IsOwner; transient failures are
// retried, and an answer lost on the way resolved by the key.
func (l *Limiter) txn(ctx context.Context, cmp clientv3.Cmp, put clientv3.Op, pres *hold.Hold, rec keys.Record) outcome {
	cmps, ops, els := []clientv3.Cmp{cmp}, []clientv3.Op{put}, []clientv3.Op{clientv3.OpGet(l.stateKey())}
	var presMod int64
	if pres != nil {
		l.mu.Lock()
		presMod = l.presMod
		l.mu.Unlock()
		cmps = append(cmps, pres.IsOwner()...)
		ops = append(ops, pres.Rewrite(rec))
		els = append(els, clientv3.OpGet(pres.Key(), clientv3.WithKeysOnly()))
	}
	unknown := false
	backoff := 10 * time.Millisecond
	for {
		resp, err := l.s.Client().Txn(ctx).If(cmps...).Then(ops...).Else(els...).Commit()
		if err != nil {
			unknown = true
			if etcderr.Transient(err) && ctx.Err() == nil && l.s.Err() == nil {
				time.Sleep(backoff)
				backoff = min(2*backoff, 500*time.Millisecond)
				continue
			}
			return outcome{err: l.cause(err), unknown: true}
		}
		if resp.Succeeded {
			if pres != nil {
				l.mu.Lock()
				l.presMod = resp.Header.Revision
				l.mu.Unlock()
			}
			return outcome{ok: true, rev: resp.Header.Revision}
		}
		if pres != nil {
			own := resp.Responses[1].GetResponseRange().Kvs
			switch {
			case len(own) == 0:
				if unknown {
					return outcome{lost: true, unknown: true}
				}
				return outcome{lost: true}
			case unknown && own[0].ModRevision > presMod:
				// An earlier attempt applied: only this process's Txns
				// rewrite its key.
				l.mu.Lock()
				l.presMod = own[0].ModRevision
				l.mu.Unlock()
				return outcome{ok: true, rev: own[0].ModRevision}
			}
		} else if unknown {
			return outcome{err: errConflict, unknown: true}
		}
		return readState(resp.Responses[0])
	}
}

// readState is a conflict's outcome from the state the Txn read.
func readState(r *pb.ResponseOp) outcome {
	kvs := r.GetResponseRange().Kvs
	if len(kvs) == 0 {
		return outcome{read: true}
	}
	st, err := decodeState(kvs[0].Value)
	if err != nil {
		return outcome{err: err}
	}
	return outcome{read: true, st: st, mod: kvs[0].ModRevision}
}

// txnCreate is a process's first reservation: its reservation key is
// created, owned by its session, in the same Txn as the state's CAS.
func (l *Limiter) txnCreate(ctx context.Context, cmp clientv3.Cmp, put clientv3.Op, rec keys.Record) outcome {
	rec.Since = l.clock.Now()
	h := hold.New(l.s, &l.hcfg, rec, hold.Key{Key: l.sp.Key("r", l.s.NextID()), Watch: watch.MirrorOf{Hub: l.hub, Base: l.sp.Base()}})
	c, err := h.Create(ctx, hold.Spec{If: []clientv3.Cmp{cmp}, Then: []clientv3.Op{put}, Else: []clientv3.Op{clientv3.OpGet(l.stateKey())}})
	if err != nil {
		// The reservation may have applied; its permits are never used.
		h.Abandon(ctx)
		return outcome{err: err, unknown: true}
	}
	if c.Failed() {
		h.Abandon(ctx)
		return readState(c.Else[0])
	}
	if err := h.Grant(); err != nil {
		h.Abandon(ctx)
		return outcome{err: err, unknown: true}
	}
	l.mu.Lock()
	l.pres, l.presMod = h, c.Rev
	l.mu.Unlock()
	return outcome{ok: true, rev: c.Rev}
}

// txnRelease gives the stock back and lets the reservation key go, in one
// Txn. After an answer is lost only this may be sent again (never a
// return without the key): the lifecycle's retried release finds the key
// gone if the first one applied, and then applies nothing.
func (l *Limiter) txnRelease(ctx context.Context, pres *hold.Hold, cmp clientv3.Cmp, put clientv3.Op) outcome {
	_, err := pres.ReleaseIf(ctx, true, []clientv3.Cmp{cmp}, put)
	switch {
	case err == nil:
		return outcome{ok: true, rev: pres.ReleasedAt()}
	case errors.Is(err, hold.ErrCond):
		return outcome{err: errConflict}
	case errors.Is(err, errPresence):
		return outcome{lost: true}
	}
	return outcome{err: err, unknown: true}
}

// cause prefers the session's error.
func (l *Limiter) cause(err error) error {
	if serr := l.s.Err(); serr != nil {
		return serr
	}
	return etcderr.Explain(l.s.Client(), err)
}

// backoff is how long the loop waits after a failed Txn.
func (l *Limiter) backoff() time.Duration {
	return min(10*time.Millisecond<<min(l.backoffN, 7), time.Second)
}

func errTooLarge(n, burst int64) error {
	return fmt.Errorf("%w: request for %d events, burst is %d", ErrTooLarge, n, burst)
}
