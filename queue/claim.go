package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// pick chooses which candidate to try. With no contention seen it is the
// head, so a lone consumer gets strict priority and FIFO order; after
// conflicts, claims spread at random over the first few candidates so
// that N consumers stop racing for the same key.
func (q *Queue) pick(cands []candidate) candidate {
	q.mu.Lock()
	n := min(q.spread, len(cands))
	q.mu.Unlock()
	if n <= 1 {
		return cands[0]
	}
	return cands[rand.IntN(n)]
}

// contended adjusts the spread: double it on a lost race, shrink it by
// one on a claim won at the first try.
func (q *Queue) contended(lost bool) {
	q.mu.Lock()
	if lost {
		q.spread = min(q.spread*2, window)
	} else {
		q.spread = max(q.spread-1, 1)
	}
	q.mu.Unlock()
}

// Claim blocks until a message is ready and claims it under s: while s
// lives (or until Ack or Nack) no other consumer gets the message. If s
// ends first, the message becomes claimable again and its Attempt grows.
//
// A claim is one read and one Txn, or just the Txn when this Queue's
// previous Ack already read the head; losing a race costs one more Txn,
// which brings back a fresh read. Consumers that keep racing spread over
// the first few ready messages (see the package doc). Claim returns ctx's error when ctx
// ends, an error wrapping session.ErrExpired or session.ErrClosed when s
// ends, and ErrInvalid for a nil session. A cancelled Claim leaves no
// claim behind.
func (q *Queue) Claim(ctx context.Context, s *session.Session) (*Message, error) {
	if q.err != nil {
		return nil, q.err
	}
	if s == nil {
		return nil, fmt.Errorf("queue %q: %w: nil session", q.sp.Name(), ErrInvalid)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("queue %q: %w", q.sp.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, mt := q.sp.Name(), s.Metrics()
	start := time.Now()
	mt.Waiting(keys.KindQueue, name, 1)
	defer mt.Waiting(keys.KindQueue, name, -1)
	v := q.cached()
	first := true
	backoff := 10 * time.Millisecond
	// retry says whether err (no leader, a failover, a lost connection)
	// is worth another round, after a pause.
	retry := func(err error) bool {
		if !wait.Transient(err) || ctx.Err() != nil || s.Err() != nil {
			return false
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-s.Done():
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
				return nil, q.claimErr(ctx, s, err)
			}
		}
		if len(v.cands) == 0 {
			if v, err = q.await(ctx, s, v); err != nil {
				if retry(err) {
					continue
				}
				return nil, q.claimErr(ctx, s, err)
			}
			continue
		}
		c := q.pick(v.cands)
		m, fresh, raced, err := q.try(ctx, s, c, v)
		if err != nil {
			if retry(err) {
				v = nil
				continue
			}
			return nil, q.claimErr(ctx, s, err)
		}
		if raced || (m != nil && first) {
			q.contended(raced)
		}
		first = first && !raced
		if m == nil {
			v = fresh
			continue
		}
		if q.opts.maxAttempts > 0 && m.Attempt > q.opts.maxAttempts {
			// A consumer died holding it for the last allowed time.
			if err := m.bury(ctx, m.Attempt-1); err != nil && !errors.Is(err, ErrClaimLost) {
				return nil, err
			}
			v = nil
			continue
		}
		mt.Acquired(keys.KindQueue, name, time.Since(start))
		mt.QueueEvent(name, metrics.QueueClaimed)
		if m.Attempt > 1 {
			mt.QueueEvent(name, metrics.QueueRedelivered)
		}
		s.Logger().Debug("coord queue message claimed", "queue", name, "id", m.ID, "attempt", m.Attempt)
		return m, nil
	}
}

// try claims c, seen in view v, in one Txn. When that fails it returns
// the fresh view the same Txn read instead, and whether it lost a race
// with another consumer (rather than to a newer message in front).
//
// Besides "not claimed" and "unchanged", the Txn checks that no message
// that would come before c was created after rev: so a view that is not
// the latest (one kept from an Ack) can never make a consumer skip a
// newer message of better priority.
func (q *Queue) try(ctx context.Context, s *session.Session, c candidate, v *view) (*Message, *view, bool, error) {
	ck := q.claimPrefix(c.part) + c.suffix
	id := c.ord.id
	ak := q.sp.Key(partAttempt, id)
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	// Ready keys before c: better priorities, and same priority with an
	// earlier time (ids start with their time). Delayed keys before c:
	// due before c became ready.
	readyBefore := r + encodePriority(c.ord.prio) + "-" + encodeTime(c.ord.ready)
	if c.part == partReady {
		readyBefore = c.key
	}
	timedBefore := t + encodeTime(c.ord.ready)
	head, bounded, now := q.headOps()
	guards := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(ck), "=", 0),
		clientv3.Compare(clientv3.ModRevision(c.key), "=", c.mod),
		clientv3.Compare(clientv3.CreateRevision(r), "<", v.rev+1).WithRange(readyBefore),
		clientv3.Compare(clientv3.CreateRevision(t), "<", v.rev+1).WithRange(timedBefore),
	}
	if now > v.now {
		// And no delayed message became due since the view was read: it
		// may have a better priority than c. (An empty range compares as
		// a missing key, create revision 0.)
		guards = append(guards, clientv3.Compare(clientv3.CreateRevision(t+encodeTime(v.now+1)), "=", 0).WithRange(t+encodeTime(now+1)))
	}
	resp, err := q.cli.Txn(ctx).
		If(guards...).
		Then(
			clientv3.OpPut(ck, fmt.Sprintf("%016x", int64(s.Lease())), clientv3.WithLease(s.Lease())),
			// Each claim bumps the attempt key's Version: the attempt
			// count survives a consumer's crash without a write to the
			// (possibly large) message.
			clientv3.OpPut(ak, ""),
			clientv3.OpGet(c.key),
			clientv3.OpGet(ak, clientv3.WithKeysOnly()),
		).
		Else(append(head, clientv3.OpGet(ck, clientv3.WithKeysOnly()), clientv3.OpGet(c.key, clientv3.WithKeysOnly()))...).
		Commit()
	if err != nil {
		// The Txn may have been applied: drop a claim that nobody will
		// ever Ack, or the message stays hidden until s ends.
		q.dropClaim(ctx, s, ck)
		return nil, nil, false, err
	}
	if !resp.Succeeded {
		fresh := q.parseView(resp.Header.Revision, now, resp.Responses)
		q.observe(fresh, bounded)
		n := len(resp.Responses)
		claimed := len(resp.Responses[n-2].GetResponseRange().Kvs) > 0
		msg := resp.Responses[n-1].GetResponseRange().Kvs
		raced := claimed || len(msg) == 0 || msg[0].ModRevision != c.mod
		if len(fresh.cands) == 0 {
			fresh = nil // all claimed or empty: let read page on or wait
		}
		return nil, fresh, raced, nil
	}
	msgKV := resp.Responses[2].GetResponseRange().Kvs
	attKV := resp.Responses[3].GetResponseRange().Kvs
	if len(msgKV) == 0 || len(attKV) == 0 {
		q.dropClaim(ctx, s, ck)
		return nil, nil, false, fmt.Errorf("queue %q: message %s vanished inside its claim Txn", q.sp.Name(), id)
	}
	rec, err := decodeRecord(msgKV[0].Value)
	if err != nil {
		q.dropClaim(ctx, s, ck)
		return nil, nil, false, fmt.Errorf("queue %q: message %s: %w", q.sp.Name(), id, err)
	}
	m := &Message{
		ID:         id,
		Payload:    rec.payload,
		Attempt:    int(attKV[0].Version),
		Priority:   rec.prio,
		Enqueued:   unixTime(rec.enqueued),
		q:          q,
		s:          s,
		rec:        rec,
		key:        c.key,
		claimKey:   ck,
		attemptKey: ak,
		rev:        resp.Header.Revision,
		claimedAt:  time.Now(),
	}
	return m, nil, false, nil
}

// dropClaim deletes a claim key this session may have just made, with a
// bounded timeout that outlives a cancelled ctx.
func (q *Queue) dropClaim(ctx context.Context, s *session.Session, ck string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	q.cli.Txn(cctx).If(clientv3.Compare(clientv3.LeaseValue(ck), "=", s.Lease())).Then(clientv3.OpDelete(ck)).Commit()
}

func (q *Queue) claimErr(ctx context.Context, s *session.Session, err error) error {
	if serr := s.Err(); serr != nil {
		return fmt.Errorf("queue %q: %w", q.sp.Name(), serr)
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("queue %q: %w: %w", q.sp.Name(), session.ErrExpired, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return fmt.Errorf("queue %q: claim: %w", q.sp.Name(), err)
}
