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
		if len(v.cands) == 0 {
			if v, err = d.idle(ctx, l, v); err != nil {
				if retry(err) {
					continue
				}
				return nil, q.claimErr(ctx, l, err)
			}
			continue
		}
		c := q.pick(v.cands, int64(l.Lease()), attempt)
		m, fresh, raced, err := q.try(ctx, l, c, v)
		if err != nil {
			if retry(err) {
				v = nil
				continue
			}
			return nil, q.claimErr(ctx, l, err)
		}
		if raced || (m != nil && first) {
			q.contended(raced)
		}
		first = first && !raced
		attempt++
		if m == nil {
			v = fresh
			continue
		}
		if len(v.cands) > 1 {
			// More was ready than this consumer takes: let another waiting
			// consumer of the process at it.
			d.pass()
		}
		if q.opts.maxAttempts > 0 && m.Attempt > q.opts.maxAttempts {
			// A consumer died holding it for the last allowed time.
			if err := m.bury(ctx, m.Attempt-1, "max attempts: the consumer holding its last attempt died", ""); err != nil && !errors.Is(err, ErrClaimLost) {
				return nil, err
			}
			v = nil
			continue
		}
		mt.QueueEvent(name, metrics.QueueClaimed)
		if m.Attempt > 1 {
			mt.QueueEvent(name, metrics.QueueRedelivered)
		}
		l.Logger().Debug("coord queue message claimed", "kind", keys.KindQueue, "name", name, "id", m.ID, "attempt", m.Attempt, "token", m.Token())
		return m, nil
	}
}

// try claims c, seen in view v, in one Txn. The claim moves c's index
// entry to f/ and puts a claim key of its own on the session's lease.
// When that fails it returns the fresh view the same Txn read instead,
// and whether it lost a race with another consumer (rather than to a
// newer message in front).
//
// Besides "unchanged", the Txn checks that no message that would come
// before c was created after the view: so a view that is not the latest
// (one kept from an Ack, or a message handed over by the dispatcher) can
// never make a consumer skip a newer message of better priority. Those
// compares cover only index entries before c in the view (a few, and
// small: the range compare loads what it covers).
func (q *Queue) try(ctx context.Context, l *lease.Session, c candidate, v *view) (*Message, *view, bool, error) {
	id := c.ord.id
	claimKey := q.sp.Key(partClaim, id+"/"+l.NextID())
	fk := q.sp.Key(partInflight, id)
	now := time.Now().UnixNano()
	rec := c.rec.claimed(now)
	cfg := q.cfg
	cfg.Label = fmt.Sprintf("queue %q: message %s", q.sp.Name(), id)
	h := hold.New(l, &cfg, keys.Record{Value: id},
		hold.Key{Key: claimKey, Watch: watch.RangeOf{Hub: q.hub, Key: q.sp.Base(), End: q.indexEnd()}})
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	// Ready entries before c: better priorities, and same priority with an
	// earlier time. Delayed entries before c: due before c became ready.
	readyBefore := r + encodePriority(c.ord.prio) + "-" + encodeTime(c.ord.ready)
	if c.part == partReady {
		readyBefore = c.key
	}
	timedBefore := t + encodeTime(c.ord.ready)
	guards := []clientv3.Cmp{
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
	created, err := h.Create(ctx, hold.Spec{
		If: guards,
		Then: []clientv3.Op{
			clientv3.OpDelete(c.key),
			clientv3.OpPut(fk, string(inflight{from: c.key, claim: claimKey, rec: rec}.encode())),
			clientv3.OpGet(q.sp.Key(partPayload, id)),
		},
		Else: append(q.headOps(now), clientv3.OpGet(c.key, clientv3.WithKeysOnly())),
	})
	undo := []clientv3.Op{clientv3.OpDelete(fk), clientv3.OpPut(c.key, string(c.rec.encode()))}
	if err != nil {
		// The Txn may have been applied: give the message back, or it
		// stays in flight until the session ends.
		h.Abandon(ctx, undo...)
		return nil, nil, false, err
	}
	if created.Failed() {
		fresh := q.parseView(created.At, now, created.Else)
		msg := created.Else[3].GetResponseRange().Kvs
		raced := len(msg) == 0 || msg[0].ModRevision != c.mod
		if len(fresh.cands) == 0 {
			fresh = nil // empty: read again, linearizably, before waiting
		}
		return nil, fresh, raced, nil
	}
	var payload []byte
	if created.Existed {
		// An earlier attempt of this claim landed, its answer lost: the
		// claim is ours, but its read of the payload is gone.
		resp, err := q.cli.Get(ctx, q.sp.Key(partPayload, id))
		if err != nil || len(resp.Kvs) == 0 {
			h.Abandon(ctx, undo...)
			return nil, nil, false, errors.Join(fmt.Errorf("queue %q: message %s: payload unreadable", q.sp.Name(), id), err)
		}
		payload = resp.Kvs[0].Value
	} else if kvs := created.Then[2].GetResponseRange().Kvs; len(kvs) > 0 {
		payload = kvs[0].Value
	} else {
		h.Abandon(ctx, undo...)
		return nil, nil, false, fmt.Errorf("queue %q: message %s has no payload", q.sp.Name(), id)
	}
	// The answer may have been held up past the moment the session could
	// vouch for the claim (another consumer may have it by now): give it
	// back rather than return it.
	if err := h.Grant(); err != nil {
		h.Abandon(ctx, undo...)
		return nil, nil, false, err
	}
	m := &Message{
		ID:        id,
		Payload:   payload,
		Attempt:   rec.attempts,
		Priority:  rec.prio,
		Enqueued:  unixTime(rec.enqueued),
		q:         q,
		s:         l,
		h:         h,
		rec:       rec,
		from:      c.key,
		claimedAt: time.Now(),
	}
	return m, nil, false, nil
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
