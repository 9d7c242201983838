package hold

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/watch"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watcher is where a hold sees its key go: a primitive's mirror, or the
// feed of its range. WatchGone calls gone once, when key (created at rev)
// is deleted or replaced, or when watching fails for good (a closed
// client, a refused watch), and returns the function that stops it.
type Watcher interface {
	WatchGone(key string, rev int64, gone func(error)) (stop func())
}

// Done returns a channel closed when the hold ends: lost, or let go by its
// owner. The first call starts watching the key (a primitive that already
// follows its line's mirror pays nothing for it).
func (h *Hold) Done() <-chan struct{} {
	h.Watch()
	return h.done
}

// Watch starts watching for the key's loss, once.
func (h *Hold) Watch() {
	h.mu.Lock()
	if h.stopWatch != nil || h.st >= released || h.rev == 0 {
		h.mu.Unlock()
		return
	}
	h.stopWatch = func() {} // claimed; set for real below
	rev := h.rev
	h.mu.Unlock()
	var stops []func()
	for i, k := range h.keys {
		stops = append(stops, h.watch[i].WatchGone(k, rev, func(err error) { h.lose(err) }))
	}
	stop := func() {
		for _, s := range stops {
			s()
		}
	}
	// The session's end loses the hold too; nothing runs until then.
	stopEnd := h.s.AfterEnd(func() { h.lose(h.s.Err()) })
	h.mu.Lock()
	h.stopWatch = func() { stop(); stopEnd() }
	ended := h.st >= released
	h.mu.Unlock()
	if ended {
		h.halt()
	}
}

func (h *Hold) halt() {
	h.mu.Lock()
	stop := h.stopWatch
	h.stopWatch = func() {}
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// lose records that the key went while the hold did not expect it: held
// (a loss, reported), or asking (the caller's wait sees it). A key that
// goes while its owner releases it is the owner's own release.
func (h *Hold) lose(cause error) {
	h.mu.Lock()
	if h.st != held && h.st != asking {
		h.mu.Unlock()
		return
	}
	wasHeld := h.st == held
	h.st, h.cause = lost, cause
	h.lostAt = time.Now()
	h.refined = make(chan struct{})
	close(h.done)
	rev, start, at := h.rev, h.start, h.lostAt
	h.mu.Unlock()
	go h.halt()
	// Done is closed first, at once: a holder must learn of its loss before
	// anyone else can be granted. The cause is refined afterwards: a key
	// that went with the lease means the session is lost, which is the
	// cause callers test for (errors.Is(err, session.ErrExpired)).
	go func() {
		defer close(h.refined)
		if errors.Is(cause, watch.ErrGone) {
			h.s.Verify(context.Background())
			if serr := h.s.Err(); serr != nil {
				h.mu.Lock()
				h.cause = serr
				h.mu.Unlock()
			}
		}
		if !wasHeld {
			return
		}
		h.mu.Lock()
		c := h.cause
		h.mu.Unlock()
		// A deliberate Session.Close ends what the session held as its
		// owner asked: not a loss to alert anyone about.
		loss := !errors.Is(c, lease.ErrClosed)
		if sp := h.takeSpan(); sp != nil {
			endLost(sp, c, at) // at the loss, not after its refinement
		}
		m := h.s.Metrics()
		for _, n := range h.cfg.Names {
			m.Released(h.cfg.Kind, n, time.Since(start), loss)
		}
		if h.cfg.OnEnd != nil {
			h.cfg.OnEnd(h, loss)
		}
		level := slog.LevelWarn
		if !loss {
			level = slog.LevelDebug
		}
		h.s.Logger().Log(context.Background(), level, "coord "+h.cfg.noun()+" lost", "kind", h.cfg.Kind, "name", h.cfg.Label,
			"token", rev, "lease", h.s.LeaseHex(), "error", c)
	}()
}

// Lost returns the loss error (wrapping the primitive's Lost sentinel and
// the cause) once the hold was lost, or nil.
func (h *Hold) Lost() error {
	h.mu.Lock()
	st, cause := h.st, h.cause
	h.mu.Unlock()
	if st != lost {
		return nil
	}
	return h.lossErr(cause)
}

// refineWait bounds how long reporting a loss waits for its cause to be
// refined (is the lease gone too?): a round trip on a healthy network, and
// never long on a broken one, where the loss must still be reported at
// once.
const refineWait = 250 * time.Millisecond

func (h *Hold) lossErr(cause error) error {
	h.mu.Lock()
	refined := h.refined
	h.mu.Unlock()
	if refined != nil {
		t := time.NewTimer(refineWait)
		select {
		case <-refined:
		case <-h.s.Done():
		case <-t.C:
		}
		t.Stop()
		h.mu.Lock()
		cause = h.cause
		h.mu.Unlock()
		if serr := h.s.Err(); serr != nil && errors.Is(cause, watch.ErrGone) {
			cause = serr
		}
	}
	return fmt.Errorf("%s: %w: %w", h.cfg.Label, h.cfg.Errors.Lost, cause)
}

// Release lets the keys go in one request. With then (ops the primitive
// runs only while it still holds: a queue Ack's deletes), it is one Txn
// fenced on the keys being this hold's:
//
//	If(keys created at rev) Then(delete keys, [move the fence], then...)
//
// Without, it deletes the keys unconditionally (they are unique to this
// hold, so a late or repeated delete can never touch another's) and
// counts what it deleted, so that a MultiMutex that lost one name still
// lets the others go.
//
// On a hold already known lost it returns the loss at once, without
// touching the network (the network may be what lost it). A Release whose
// answer is lost can be retried; a retry that finds the keys gone counts
// as the earlier attempt's success (see Config.StrictRetry), and the
// keys' watch, which sees the delete, never reports the owner's own
// release as a loss. It returns then's responses.
func (h *Hold) Release(ctx context.Context, then ...clientv3.Op) ([]*pb.ResponseOp, error) {
	return h.release(ctx, nil, then)
}

// ErrCond is returned by ReleaseIf when the primitive's own compares
// failed while the keys were still the hold's: the keys were let go all
// the same, without the primitive's ops.
var ErrCond = errors.New("hold: release condition failed")

// ReleaseIf is Release with the primitive's own compares: one Txn
//
//	If(keys created at rev, cmps...) Then(delete keys, then...)
//
// When cmps fail (the keys still the hold's), it returns ErrCond; with
// keep the hold stays held (the caller may try otherwise), without it the
// keys are let go all the same with a plain Release, so a hold is never
// kept because a condition of the primitive's changed.
func (h *Hold) ReleaseIf(ctx context.Context, keep bool, cmps []clientv3.Cmp, then ...clientv3.Op) ([]*pb.ResponseOp, error) {
	rs, err := h.release(ctx, cmps, then)
	if !errors.Is(err, ErrCond) {
		return rs, err
	}
	h.mu.Lock()
	h.st, h.retried = held, false
	h.mu.Unlock()
	if keep {
		return nil, ErrCond
	}
	if _, err := h.release(ctx, nil, nil); err != nil {
		return nil, err
	}
	return nil, ErrCond
}

func (h *Hold) release(ctx context.Context, cmps []clientv3.Cmp, then []clientv3.Op) ([]*pb.ResponseOp, error) {
	h.mu.Lock()
	switch h.st {
	case lost:
		cause := h.cause
		h.mu.Unlock()
		return nil, h.lossErr(cause)
	case held:
		h.st = releasing
		h.retried = false
	case releasing:
		h.retried = true
	default:
		h.mu.Unlock()
		return nil, h.wrap(h.cfg.Errors.NotHeld)
	}
	retry, ambiguous := h.retried, h.ambiguous
	h.mu.Unlock()
	ops := make([]clientv3.Op, 0, len(h.keys)+len(h.marks)+1+len(then))
	for _, k := range h.keys {
		ops = append(ops, clientv3.OpDelete(k))
	}
	// The marks go in the same request, and only while the keys are still
	// this hold's: a hold whose key went first (its lease expired) keeps
	// its marks, so the next holder knows it was not let go.
	for _, m := range h.marks {
		ops = append(ops, clientv3.OpDelete(m))
	}
	if ambiguous {
		ops = append(ops, h.s.Bump())
	}
	n := len(ops)
	var resp *clientv3.TxnResponse
	var err error
	if n == 1 && len(then) == 0 && len(cmps) == 0 && !h.cfg.Named {
		// The common case, one key: a plain delete (the uncontended lock
		// is one Txn and one DeleteRange, as etcd's own).
		var d *clientv3.DeleteResponse
		if d, err = h.s.Client().Delete(ctx, h.keys[0]); err == nil {
			resp = &clientv3.TxnResponse{Header: d.Header, Succeeded: true,
				Responses: []*pb.ResponseOp{{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: (*pb.DeleteRangeResponse)(d)}}}}
		}
	} else {
		txn := h.s.Client().Txn(ctx)
		if len(then) > 0 || len(cmps) > 0 || len(h.marks) > 0 || h.cfg.Named {
			// A named key may be a successor's by now: delete it only
			// while it is this hold's.
			txn = txn.If(append(h.IsOwner(), cmps...)...)
		}
		var els []clientv3.Op
		switch {
		case len(cmps) > 0:
			els = []clientv3.Op{clientv3.OpGet(h.keys[0], clientv3.WithKeysOnly())}
		case len(h.marks) > 0:
			// Not all keys are this hold's any more: let go of the rest
			// all the same (a MultiMutex that lost one name), marks kept.
			els = ops[:len(h.keys):len(h.keys)]
			if ambiguous {
				els = append(els, h.s.Bump())
			}
		}
		resp, err = txn.Then(append(ops, then...)...).Else(els...).Commit()
		if err == nil && !resp.Succeeded && ambiguous && len(cmps) == 0 && len(h.marks) > 0 {
			h.s.Bumped(resp.Header.Revision)
		}
		if err == nil && !resp.Succeeded && len(cmps) > 0 {
			if own := resp.Responses[0].GetResponseRange().Kvs; len(own) > 0 && own[0].CreateRevision == h.Rev() {
				return nil, ErrCond
			}
		}
	}
	if err != nil {
		// Still held as far as we know: the caller may retry.
		return nil, h.wrap(etcderr.Explain(h.s.Client(), err))
	}
	all := resp.Succeeded
	for i := range h.keys {
		if resp.Succeeded && resp.Responses[i].GetResponseDeleteRange().Deleted != 1 {
			all = false
		}
	}
	if resp.Succeeded && ambiguous {
		h.s.Bumped(resp.Header.Revision)
	}
	if all {
		h.mu.Lock()
		h.releasedAt = resp.Header.Revision
		h.mu.Unlock()
		h.finish(released)
		return resp.Responses[n:], nil
	}
	if retry && (!h.cfg.StrictRetry || h.s.Verify(ctx) == nil && h.s.Err() == nil) {
		h.finish(released)
		return nil, nil
	}
	// The key went before the release: a loss the watch had not reported
	// yet (or never watched for).
	h.mu.Lock()
	h.st = held
	h.mu.Unlock()
	h.lose(watch.ErrGone)
	return nil, h.Lost()
}

// finish ends the hold by its owner. It reports the hold time once.
func (h *Hold) finish(to state) {
	h.mu.Lock()
	from := h.st
	if from == lost || from == released || from == abandoned {
		h.mu.Unlock()
		return
	}
	h.st = to
	close(h.done)
	start, rev := h.start, h.rev
	h.mu.Unlock()
	h.halt()
	if from == held || from == releasing {
		h.takeSpan().End(span.Released, nil, time.Time{})
		for _, n := range h.cfg.Names {
			h.s.Metrics().Released(h.cfg.Kind, n, time.Since(start), false)
		}
		if h.cfg.OnEnd != nil {
			h.cfg.OnEnd(h, false)
		}
		h.s.Logger().Debug("coord "+h.cfg.noun()+" released", "kind", h.cfg.Kind, "name", h.cfg.Label, "token", rev,
			"lease", h.s.LeaseHex(), "held", time.Since(start))
	}
}

// Abandon gives up a hold that was not granted (a cancelled or failed
// wait, an ambiguous create), or one granted but never to be reported:
// it deletes the keys if they exist, with undo's ops in the same Txn, and
// moves the fence when a create may still be in flight, so nothing this
// hold sent can bring a key back. It tries at once with its own
// timeout (the caller's ctx may be cancelled; only its values are used);
// if etcd cannot be reached it keeps trying in the background until it
// can or the session ends (when the lease takes the key anyway). So a
// failed waiter never blocks a line for longer than etcd is unavailable.
func (h *Hold) Abandon(ctx context.Context, undo ...clientv3.Op) {
	h.abandon(ctx, nil, undo)
}

// AbandonIf is Abandon whose undo ops depend on the primitive's own
// compares rather than on the hold's key existing: the keys are deleted
// either way, undo's ops only when cmps hold. (An election uses it to
// take back a leader key naming the abandoned candidate, whoever wrote
// it.)
func (h *Hold) AbandonIf(ctx context.Context, cmps []clientv3.Cmp, undo ...clientv3.Op) {
	if h.cfg.Named {
		// Its keys go whether or not cmps hold, which for a named key
		// could be a successor's.
		panic("hold: AbandonIf on a named hold")
	}
	h.abandon(ctx, cmps, undo)
}

func (h *Hold) abandon(ctx context.Context, cmps []clientv3.Cmp, undo []clientv3.Op) {
	h.mu.Lock()
	if h.st == released || h.st == abandoned {
		h.mu.Unlock()
		return
	}
	wasLost := h.st == lost
	if !wasLost {
		h.st = abandoned
		close(h.done)
	}
	ambiguous, rev := h.ambiguous, h.rev
	sp := h.span
	h.span = nil
	h.mu.Unlock()
	sp.End(span.Abandoned, nil, time.Time{})
	h.halt()
	h.stopWaiting()
	// A hold abandoned was never reported held, so its marks go whatever
	// became of its keys: they would make the next holder wait a
	// lock-delay for a loss no one relied on. They are on no lease, so
	// they must go even when the session is gone.
	marked := len(h.marks) > 0 && (rev > 0 || ambiguous)
	if !marked && !ambiguous && (rev == 0 || wasLost) {
		return // never created, or already gone
	}
	if !marked && h.s.Err() != nil {
		return // the lease is gone or going, and takes the key along
	}
	run := func(ctx context.Context) error {
		var bump []clientv3.Op
		if ambiguous && h.s.Err() == nil {
			bump = []clientv3.Op{h.s.Bump()}
		}
		dels := make([]clientv3.Op, 0, len(h.keys)+len(h.marks))
		for _, k := range h.keys {
			dels = append(dels, clientv3.OpDelete(k))
		}
		for _, m := range h.marks {
			dels = append(dels, clientv3.OpDelete(m))
		}
		marks := dels[len(h.keys):len(dels):len(dels)]
		// The keys were created together, so the first says for all.
		cond := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(h.keys[0]), ">", 0)}
		if h.cfg.Named {
			// Only while it is this hold's: by its create revision when
			// known, else by its value, which carries the hold's unique
			// id (a single-key value compare, not a range).
			cond = []clientv3.Cmp{clientv3.Compare(clientv3.Value(h.keys[0]), "=", h.rec.Encode())}
			if rev > 0 {
				cond = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(h.keys[0]), "=", rev)}
			}
		}
		var els []clientv3.Op
		if cmps != nil {
			cond, els = cmps, append(dels[:len(dels):len(dels)], bump...)
		} else {
			els = append(marks, bump...)
		}
		resp, err := h.s.Client().Txn(ctx).
			If(cond...).
			Then(append(append(dels[:len(dels):len(dels)], undo...), bump...)...).
			Else(els...).
			Commit()
		if err == nil && len(bump) > 0 {
			h.s.Bumped(resp.Header.Revision)
		}
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	err := run(cctx)
	cancel()
	if err == nil {
		return
	}
	h.s.Logger().Debug("coord cleanup deferred to the background", "kind", h.cfg.Kind, "name", h.cfg.Label,
		"key", h.keys[0], "error", err)
	go func() {
		backoff := 50 * time.Millisecond
		for {
			select {
			case <-h.s.Done():
				if !marked {
					return
				}
				// The marks outlive the lease: keep trying until they go
				// or the client is closed.
				<-time.After(backoff)
			case <-time.After(backoff):
			}
			ctx, cancel := context.WithTimeout(context.Background(), h.s.TTL())
			err := run(ctx)
			cancel()
			if err == nil || etcderr.Closed(h.s.Client()) {
				return
			}
			backoff = min(backoff*2, time.Second)
		}
	}()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// ReleasedAt is the revision of the request that released the hold (0 if
// it was not released by a request that answered): the revision at which
// reads made in the same Txn are current.
func (h *Hold) ReleasedAt() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.releasedAt
}

// ReleaseAll releases several holds of one session in one Txn, with then
// (ops the primitive runs only while every hold still holds), as Release
// does for one:
//
//	If(every hold's keys created at its rev) Then(delete them all, then...)
//
// It is for settling a batch (a queue's acks) in one request. When a hold
// is already known lost, or a compare fails (one was lost meanwhile), it
// returns ErrCond having changed nothing: release them one by one to
// learn which (a hold this call found already being released, by an
// earlier ReleaseAll whose answer was lost, stays so, and its Release
// counts as that attempt's retry). A network error leaves them all being
// released, so that a Release of each afterwards counts as a retry.
func ReleaseAll(ctx context.Context, hs []*Hold, then ...clientv3.Op) ([]*pb.ResponseOp, error) {
	if len(hs) == 0 {
		return nil, nil
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	again := make([]bool, len(hs)) // an earlier ReleaseAll of it may have landed
	bump := false
	restore := func(upto int) {
		for j, p := range hs[:upto] {
			p.mu.Lock()
			if !again[j] {
				p.st, p.retried = held, false
			}
			p.mu.Unlock()
		}
	}
	for i, h := range hs {
		h.mu.Lock()
		if h.st != held && h.st != releasing || h.s != hs[0].s {
			h.mu.Unlock()
			restore(i)
			return nil, ErrCond
		}
		again[i] = h.st == releasing
		h.retried = again[i]
		h.st = releasing
		ambiguous := h.ambiguous
		h.mu.Unlock()
		cmps = append(cmps, h.IsOwner()...)
		for _, k := range h.keys {
			ops = append(ops, clientv3.OpDelete(k))
		}
		bump = bump || ambiguous
	}
	s := hs[0].s
	if bump {
		ops = append(ops, s.Bump()) // once: a Txn may not put one key twice
	}
	n := len(ops)
	resp, err := s.Client().Txn(ctx).If(cmps...).Then(append(ops, then...)...).Commit()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hs[0].cfg.Label, etcderr.Explain(s.Client(), err))
	}
	if !resp.Succeeded {
		// Nothing was applied. A hold an earlier attempt may have
		// released stays "being released", so that its own Release
		// counts as that attempt's retry.
		restore(len(hs))
		return nil, ErrCond
	}
	for _, h := range hs {
		h.mu.Lock()
		h.releasedAt = resp.Header.Revision
		bumped := h.ambiguous
		h.mu.Unlock()
		if bumped {
			s.Bumped(resp.Header.Revision)
		}
		h.finish(released)
	}
	return resp.Responses[n:], nil
}
