package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Claim blocks until a message is ready and claims it under s: while s
// lives (or until Ack or Nack) no other consumer gets the message. If s
// ends first, the message becomes claimable again and its Attempt grows.
//
// A claim is one read and one Txn, or just the Txn when this Queue's
// previous Ack already read the head (that Txn does), however many
// messages are claimed or in flight: claimed messages leave the ready
// range. Losing a race costs one more Txn, which brings back a fresh read.
// Consumers that keep racing spread over the first few ready messages
// (see the package doc). A consumer that finds the queue empty waits on
// the process's one watch of the queue: a new message wakes one waiting
// consumer of the process, handing it the message, so it claims with no
// read. Claim returns ctx's error when ctx ends, an error wrapping
// session.ErrExpired or session.ErrClosed when s ends, and ErrInvalid for
// a nil session or one of another root prefix. A cancelled Claim leaves no
// claim behind, and a claim whose grant arrives after s stopped being
// trustworthy is given back, never returned.
func (q *Queue) Claim(ctx context.Context, s *session.Session) (*Message, error) {
	ms, err := q.claimTraced(ctx, s, 1)
	if err != nil {
		return nil, err
	}
	return ms[0], nil
}

// ClaimN is Claim for up to n messages at once (1..MaxBatch), in one Txn:
// it blocks until at least one is ready and returns as many as were ready
// at the head, up to n, each with a claim of its own (settle each; a
// worker pool gives them out). Consume uses it with WithBatch. It returns
// ErrInvalid for n out of range.
func (q *Queue) ClaimN(ctx context.Context, s *session.Session, n int) ([]*Message, error) {
	if n < 1 || n > MaxBatch {
		return nil, fmt.Errorf("queue %q: %w: claim of %d messages (1..%d)", q.sp.Name(), ErrInvalid, n, MaxBatch)
	}
	return q.claimTraced(ctx, s, n)
}

func (q *Queue) claim(ctx context.Context, s *session.Session, n int) ([]*Message, error) {
	if q.err != nil {
		return nil, q.err
	}
	if s == nil {
		return nil, fmt.Errorf("queue %q: %w: nil session", q.sp.Name(), ErrInvalid)
	}
	l := lease.Of(s)
	if l.Root() != q.root {
		return nil, fmt.Errorf("queue %q: %w: the queue is under root %q and the session under %q: set the same root on both", q.sp.Name(), ErrInvalid, q.root, l.Root())
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("queue %q: %w", q.sp.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := q.config(ctx)
	if err != nil {
		return nil, err
	}
	d := q.dispatcher()
	d.use()
	defer d.unuse()
	name, mt := q.sp.Name(), l.Metrics()
	v := q.cached()
	first, attempt := true, 0
	backoff := 10 * time.Millisecond
	// retry says whether err (no leader, a failover, a lost connection)
	// is worth another round, after a pause.
	retry := func(err error) bool {
		if !etcderr.Transient(err) || ctx.Err() != nil || l.Err() != nil {
			return false
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-l.Done():
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		return true
	}
	for {
		var err error
		if v == nil {
			if v, err = q.read(ctx); err != nil {
				if retry(err) {
					continue
				}
				return nil, q.claimErr(ctx, l, err)
			}
		}
		if len(v.cands) == 0 && v.bounded {
			// Nothing before the horizon: the next read looks past it.
			v = nil
			continue
		}
		if len(v.cands) == 0 {
			if v, err = d.idle(ctx, l, v); err != nil {
				if retry(err) {
					continue
				}
				return nil, q.claimErr(ctx, l, err)
			}
			continue
		}
		cs, busy := d.reserve(v, func(avail []candidate) []candidate {
			return q.pickN(avail, int64(l.Lease()), attempt, q.claimLimit(n))
		})
		if cs == nil {
			// What this view shows was claimed by the process since, or
			// is being tried by another of its consumers: wait for that
			// try to end, then read the head again.
			if busy != nil {
				select {
				case <-busy:
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-l.Done():
					return nil, q.claimErr(ctx, l, l.Err())
				}
			}
			v = nil
			continue
		}
		ms, fresh, raced, rev, err := q.try(ctx, l, cs, v)
		d.settle(cs, rev)
		if err != nil {
			if retry(err) {
				v = nil
				continue
			}
			return nil, q.claimErr(ctx, l, err)
		}
		if raced || (ms != nil && first) {
			q.contended(raced)
		}
		first = first && !raced
		attempt++
		if ms == nil {
			v = fresh
			continue
		}
		if len(v.cands) > len(cs) {
			// More was ready than this consumer takes: let another waiting
			// consumer of the process at it.
			d.pass()
		}
		var out []*Message
		for _, m := range ms {
			if max := cfg.MaxAttempts; max > 0 && m.Attempt > max {
				// A consumer died holding it for the last allowed time.
				if err := m.bury(ctx, m.Attempt-1, ReasonMaxAttempts, "the consumer holding its last attempt died"); err != nil && !errors.Is(err, ErrClaimLost) {
					for _, o := range out {
						o.giveBack(context.WithoutCancel(ctx))
					}
					return nil, err
				}
				continue
			}
			mt.QueueEvent(name, metrics.QueueClaimed)
			if m.Attempt > 1 {
				mt.QueueEvent(name, metrics.QueueRedelivered)
			}
			l.Logger().Debug("coord queue message claimed", "kind", keys.KindQueue, "name", name, "id", m.ID, "attempt", m.Attempt, "token", m.Token())
			out = append(out, m)
		}
		if len(out) == 0 {
			v = nil
			continue
		}
		return out, nil
	}
}

// try claims cs, seen in view v, in one Txn. Each claim moves its
// message's index entry to f/ and puts a claim key of its own on the
// session's lease. When that fails it returns the fresh view the same Txn
// read instead, and whether it lost a race with another consumer (rather
// than to a newer message in front). rev is the revision of the claims
// when they landed, 0 when they did not.
//
// Besides "unchanged", the Txn checks that no message that would come
// before the last of cs was created after the view: so a view that is not
// the latest (one kept from an Ack, or a message handed over by the
// dispatcher) can never make a consumer skip a newer message of better
// priority. Those compares cover only index entries before it in the
// view (a few, and small: the range compare loads what it covers).
func (q *Queue) try(ctx context.Context, l *lease.Session, cs []candidate, v *view) ([]*Message, *view, bool, int64, error) {
	now := time.Now().UnixNano()
	hp := q.headPlan(now)
	type claimOf struct {
		c   candidate
		rec record
		fk  string
		h   *hold.Hold
	}
	claims := make([]claimOf, len(cs))
	holds := make([]*hold.Hold, len(cs))
	var guards []clientv3.Cmp
	var ops []clientv3.Op
	last := cs[0]
	for i, c := range cs {
		id := c.ord.id
		claimKey := q.sp.Key(partClaim, id+"/"+l.NextID())
		cfg := q.cfg
		cfg.Label = fmt.Sprintf("queue %q: message %s", q.sp.Name(), id)
		h := hold.New(l, &cfg, keys.Record{Value: id},
			hold.Key{Key: claimKey, Watch: watch.RangeOf{Hub: q.hub, Key: q.sp.Base(), End: q.indexEnd()}})
		co := claimOf{c: c, rec: c.rec.claimed(now), fk: q.sp.Key(partInflight, id), h: h}
		claims[i], holds[i] = co, h
		guards = append(guards, clientv3.Compare(clientv3.ModRevision(c.key), "=", c.mod))
		ops = append(ops,
			clientv3.OpDelete(c.key),
			clientv3.OpPut(co.fk, string(inflight{from: c.key, claim: claimKey, rec: co.rec}.encode())),
			clientv3.OpGet(q.sp.Key(partPayload, id)))
		if last.ord.less(c.ord) {
			last = c
		}
	}
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	// Ready entries before the last claimed: better priorities, and same
	// priority with an earlier time. Delayed entries before it: due before
	// it became ready.
	readyBefore := r + encodePriority(last.ord.prio) + "-" + encodeTime(last.ord.ready)
	if last.part == partReady {
		readyBefore = last.key
	}
	timedBefore := t + encodeTime(last.ord.ready)
	// Raises of the floors, now and then, to the first entries of the
	// view (see floorRaise): the delayed range's compare then reaches to
	// where its floor goes.
	var raise floors
	if v.read && q.raiseFloor(len(cs)) {
		raise = q.floorRaise(v, readyBefore)
		timedBefore = max(timedBefore, raise[ft])
	}
	// From the view's floors: no live entry was below them then, and none
	// is now if the floors are still at or above them (every writer of an
	// entry below a floor lowers or deletes it).
	from := [2]string{r, t}
	for i := range floorParts {
		if v.from[i] != "" {
			from[i] = v.from[i]
			guards = append(guards, clientv3.Compare(clientv3.Value(q.floorKey(i)), ">", v.from[i])) // floor ≥ v.from
		}
	}
	guards = append(guards,
		clientv3.Compare(clientv3.CreateRevision(from[fr]), "<", v.rev+1).WithRange(readyBefore),
		clientv3.Compare(clientv3.CreateRevision(from[ft]), "<", v.rev+1).WithRange(timedBefore))
	if now > v.now {
		// And no delayed message became due since the view was read: it
		// may have a better priority. (An empty range compares as a
		// missing key, create revision 0.)
		guards = append(guards, clientv3.Compare(clientv3.CreateRevision(t+encodeTime(v.now+1)), "=", 0).WithRange(t+encodeTime(now+1)))
	}
	for i, to := range raise {
		if to != "" {
			ops = append(ops, clientv3.OpPut(q.floorKey(i), floorValue(to)))
		}
	}
	created, err := hold.CreateAll(ctx, holds, hold.Spec{
		If:   guards,
		Then: ops,
		Else: append(q.headOps(hp), clientv3.OpGet(cs[0].key, clientv3.WithKeysOnly())),
	})
	abandon := func() {
		for _, co := range claims {
			// The Txn may have been applied: give the message back, or it
			// stays in flight until the session ends.
			co.h.Abandon(ctx, q.putBackOps(co.fk, co.c.key, co.c.rec)...)
		}
	}
	if err != nil {
		abandon()
		return nil, nil, false, 0, err
	}
	if created.Failed() {
		fresh := q.parseView(created.At, hp, created.Else)
		msg := created.Else[headLen].GetResponseRange().Kvs
		raced := len(msg) == 0 || msg[0].ModRevision != cs[0].mod
		if len(fresh.cands) == 0 {
			fresh = nil // empty: read again, linearizably, before waiting
		}
		return nil, fresh, raced, 0, nil
	}
	payloads := make([][]byte, len(claims))
	found := make([]bool, len(claims)) // an empty payload decodes as nil
	if created.Existed {
		// An earlier attempt of this claim landed, its answer lost: the
		// claims are ours, but their reads of the payloads are gone.
		gets := make([]clientv3.Op, len(claims))
		for i, co := range claims {
			gets[i] = clientv3.OpGet(q.sp.Key(partPayload, co.c.ord.id))
		}
		resp, err := q.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			abandon()
			return nil, nil, false, 0, fmt.Errorf("queue %q: payloads unreadable: %w", q.sp.Name(), err)
		}
		for i := range claims {
			if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
				payloads[i], found[i] = kvs[0].Value, true
			}
		}
	} else {
		for i := range claims {
			if kvs := created.Then[3*i+2].GetResponseRange().Kvs; len(kvs) > 0 {
				payloads[i], found[i] = kvs[0].Value, true
			}
		}
	}
	var out []*Message
	for i, co := range claims {
		if !found[i] {
			// Its payload was deleted behind the queue's back: left in
			// line it would be claimed again and again, ahead of every
			// message behind it. It goes to the dead letters instead.
			dead := co.c.rec
			dead.reason, dead.died = ReasonNoPayload, time.Now().UnixNano()
			co.h.Abandon(ctx, append([]clientv3.Op{clientv3.OpDelete(co.fk), clientv3.OpPut(q.sp.Key(partDead, co.c.ord.id), string(dead.encode()))},
				dead.freeUnique(q)...)...)
			l.Logger().Warn("coord queue message has no payload; dead-lettered", "kind", keys.KindQueue, "name", q.sp.Name(), "id", co.c.ord.id)
			continue
		}
		// The answer may have been held up past the moment the session
		// could vouch for the claim (another consumer may have it by now):
		// give it back rather than return it.
		if err := co.h.Grant(); err != nil {
			for _, rest := range claims[i:] {
				rest.h.Abandon(ctx, q.putBackOps(rest.fk, rest.c.key, rest.c.rec)...)
			}
			for _, m := range out {
				m.giveBack(context.WithoutCancel(ctx))
			}
			return nil, nil, false, 0, err
		}
		out = append(out, &Message{
			ID:       co.c.ord.id,
			Payload:  payloads[i],
			Attempt:  co.rec.attempts,
			Priority: co.rec.prio,
			Enqueued: unixTime(co.rec.enqueued),
			q:        q,
			s:        l,
			h:        co.h,
			rec:      co.rec,
			before:   co.c.rec,
			from:     co.c.key,
			Claimed:  time.Now(),
		})
	}
	if len(out) == 0 {
		return nil, nil, false, 0, nil
	}
	return out, nil, false, created.At, nil
}

// floorRaise is where a claim from view v (a read) whose ready compare
// ends at readyBefore may raise the floors to ("" where they stay). The
// claim's compares prove that no entry before those ends was made since
// the view, which saw none live before its first: the ready floor can go
// to the view's first ready entry (or readyBefore, if that is lower), the
// delayed floor to the view's first due entry or, with none due, to the
// view's now (the claim's delayed compare reaches that far).
func (q *Queue) floorRaise(v *view, readyBefore string) floors {
	to := floors{"", q.sp.Part(partTimed) + encodeTime(v.now+1)}
	for _, c := range v.cands {
		if c.part == partReady && to[fr] == "" {
			to[fr] = min(c.key, readyBefore)
		}
		if c.part == partTimed {
			to[ft] = min(to[ft], c.key)
		}
	}
	for i := range to {
		if to[i] <= v.at[i] {
			to[i] = ""
		}
	}
	return to
}

// putBackOps are the ops that return a claimed message to its place in
// line, from its in-flight entry fk to its index entry from (ready or
// delayed) as rec. Its entry may be below its range's floor by now: the
// floor goes (a later claim raises it again).
func (q *Queue) putBackOps(fk, from string, rec record) []clientv3.Op {
	ops := []clientv3.Op{clientv3.OpDelete(fk), clientv3.OpPut(from, string(rec.encode()))}
	if i := q.floorOfKey(from); i >= 0 {
		ops = append(ops, clientv3.OpDelete(q.floorKey(i)))
	}
	return ops
}

func (q *Queue) claimErr(ctx context.Context, l *lease.Session, err error) error {
	if serr := l.Err(); serr != nil {
		return fmt.Errorf("queue %q: %w", q.sp.Name(), serr)
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("queue %q: %w: %w", q.sp.Name(), session.ErrExpired, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if strings.HasPrefix(err.Error(), fmt.Sprintf("queue %q", q.sp.Name())) {
		return err
	}
	return fmt.Errorf("queue %q: claim: %w", q.sp.Name(), err)
}
