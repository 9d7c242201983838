package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// candidate is an unclaimed message a consumer may try to claim.
type candidate struct {
	key    string // the message key
	part   string // partReady or partTimed
	suffix string // key below the part, also the claim key below c/<part>/
	mod    int64  // the message's mod revision when read
	ord    order
}

// view is one read of the head of the queue: the unclaimed messages in
// the first window of each part, and when the next delayed message is due.
type view struct {
	rev     int64
	now     int64 // unix ns: messages due by then are in the view
	cands   []candidate
	nextDue int64 // unix ns of the earliest message not yet due, 0 if none
	// more[i] says part i (ready, timed) has more messages past a window
	// that is all claimed: page on. lastKey[i] is the window's last key.
	more    [2]bool
	lastKey [2]string
	// readyN counts the ready messages read, claimed or not, for the
	// horizon.
	readyN int
}

// windowOps reads, keys only, the first window of ready messages in
// [fromR, endR) and of due delayed messages from fromT, the claims that can
// hide them, and the first message not yet due. An empty endR reads to the
// end of the part.
//
// etcd counts every key of a range even when asked for a few, so a read
// to the end of a long queue costs the whole backlog; endR bounds it to
// the head seen last time (see horizon).
func (q *Queue) windowOps(now int64, fromR, fromT, endR string) []clientv3.Op {
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	cr, ct := q.claimPrefix(partReady), q.claimPrefix(partTimed)
	endCR := keys.RangeEnd(cr)
	if endR == "" {
		endR = keys.RangeEnd(r)
	} else {
		endCR = cr + strings.TrimPrefix(endR, r)
	}
	dueEnd := t + encodeTime(now+1)
	page := func(from, end string) clientv3.Op {
		return clientv3.OpGet(from, clientv3.WithRange(end), clientv3.WithLimit(window), clientv3.WithKeysOnly())
	}
	return []clientv3.Op{
		page(fromR, endR),
		page(cr+strings.TrimPrefix(fromR, r), endCR),
		page(fromT, dueEnd),
		page(ct+strings.TrimPrefix(fromT, t), keys.RangeEnd(ct)),
		clientv3.OpGet(dueEnd, clientv3.WithRange(keys.RangeEnd(t)), clientv3.WithLimit(1), clientv3.WithKeysOnly()),
	}
}

// headOps reads the head of the queue, bounded by the horizon.
// It also returns the time it took as "now" for due messages.
func (q *Queue) headOps() ([]clientv3.Op, bool, int64) {
	q.mu.Lock()
	end := q.horizon
	q.mu.Unlock()
	now := time.Now().UnixNano()
	return q.windowOps(now, q.sp.Part(partReady), q.sp.Part(partTimed), end), end != "", now
}

// observe moves the horizon after a read of the head: past the last ready
// key of a full window read to the end that had free messages, and back
// to "the end" when a bounded window has been mostly consumed.
func (q *Queue) observe(v *view, bounded bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case !bounded && v.readyN == window && len(v.cands) > 0:
		q.horizon = v.lastKey[0] + "\x00"
	case !bounded, v.readyN < window/2:
		q.horizon = ""
	}
}

func (q *Queue) claimPrefix(part string) string { return q.sp.Part(partClaim) + part + "/" }

// parseView builds a view from the responses of windowOps.
func (q *Queue) parseView(rev, now int64, rs []*pb.ResponseOp) *view {
	v := &view{rev: rev, now: now}
	parts := [2]string{partReady, partTimed}
	for i, part := range parts {
		msgs, claims := rs[2*i].GetResponseRange(), rs[2*i+1].GetResponseRange()
		if i == 0 {
			v.readyN = len(msgs.Kvs)
		}
		prefix, cprefix := q.sp.Part(part), q.claimPrefix(part)
		held := make(map[string]bool, len(claims.Kvs))
		for _, kv := range claims.Kvs {
			held[strings.TrimPrefix(string(kv.Key), cprefix)] = true
		}
		found := 0
		for _, kv := range msgs.Kvs {
			suffix := strings.TrimPrefix(string(kv.Key), prefix)
			if held[suffix] {
				continue
			}
			parse := parseReady
			if part == partTimed {
				parse = parseTimed
			}
			ord, err := parse(suffix)
			if err != nil {
				continue // not a key this package wrote; never claim it
			}
			found++
			v.cands = append(v.cands, candidate{key: string(kv.Key), part: part, suffix: suffix, mod: kv.ModRevision, ord: ord})
		}
		if len(msgs.Kvs) > 0 {
			v.lastKey[i] = string(msgs.Kvs[len(msgs.Kvs)-1].Key)
			v.more[i] = found == 0 && msgs.More
		}
	}
	if kvs := rs[4].GetResponseRange().Kvs; len(kvs) > 0 {
		if o, err := parseTimed(strings.TrimPrefix(string(kvs[0].Key), q.sp.Part(partTimed))); err == nil {
			v.nextDue = o.ready
		}
	}
	slices.SortFunc(v.cands, func(a, b candidate) int {
		switch {
		case a.ord.less(b.ord):
			return -1
		case b.ord.less(a.ord):
			return 1
		}
		return 0
	})
	return v
}

// read returns a view with candidates, paging past a head that is all
// claimed, or the first page when there are none.
func (q *Queue) read(ctx context.Context) (*view, error) {
	ops, bounded, now := q.headOps()
	var first *view
	for {
		resp, err := q.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		v := q.parseView(resp.Header.Revision, now, resp.Responses)
		if first == nil {
			q.observe(v, bounded)
			if len(v.cands) == 0 && bounded {
				// Nothing free below the horizon: look at the whole
				// part before calling the queue empty.
				now = time.Now().UnixNano()
				ops = q.windowOps(now, q.sp.Part(partReady), q.sp.Part(partTimed), "")
				bounded = false
				continue
			}
			first = v
		}
		if len(v.cands) > 0 {
			v.nextDue = first.nextDue
			return v, nil
		}
		if !v.more[0] && !v.more[1] {
			return first, nil
		}
		// A page that is all claimed: go on past it. A part with
		// nothing more is read from its last key, which is claimed, so
		// it adds no candidates.
		fromR, fromT := q.sp.Part(partReady), q.sp.Part(partTimed)
		if v.lastKey[0] != "" {
			fromR = v.lastKey[0] + "\x00"
		}
		if v.lastKey[1] != "" {
			fromT = v.lastKey[1] + "\x00"
		}
		now = time.Now().UnixNano()
		ops = q.windowOps(now, fromR, fromT, "")
	}
}

// cacheViews bounds the views kept from Acks for the next Claims.
const cacheViews = 8

// keep stores a view read by an Ack's Txn, so that the next Claim on this
// Queue needs no read of its own: claim + ack is then two Txns.
func (q *Queue) keep(v *view) {
	if len(v.cands) == 0 {
		return // an empty head must be re-read, linearizably, before waiting
	}
	q.mu.Lock()
	if len(q.views) == cacheViews {
		q.views = q.views[1:]
	}
	q.views = append(q.views, v)
	q.mu.Unlock()
}

// cached takes the newest kept view, or nil. Each view serves one Claim.
func (q *Queue) cached() *view {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.views) == 0 {
		return nil
	}
	v := q.views[len(q.views)-1]
	q.views = q.views[:len(q.views)-1]
	return v
}

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
