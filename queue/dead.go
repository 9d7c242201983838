package queue

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/metrics"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DeadLetter is a message that was dead-lettered, as kept in the
// dead-letter list, with why.
type DeadLetter struct {
	ID       string
	Payload  []byte
	Attempts int // claims made before it was dead-lettered
	Priority int
	Enqueued time.Time
	// Reason says why it was dead-lettered ("max attempts: nacked 3
	// times").
	Reason string
	// LastError is the error text of its last failed attempt, when known.
	LastError string
	// Claimed are the times of its latest claims, oldest first.
	Claimed []time.Time
	// Died is when it was dead-lettered (zero for dead letters written by
	// coord before v0.1.0).
	Died time.Time
}

// Reasons a message is dead-lettered, as DeadLetter.Reason says them (a
// handler's Dead gives its own).
const (
	// ReasonMaxAttempts: its last allowed attempt failed (Config.MaxAttempts).
	ReasonMaxAttempts = "max attempts"
	// ReasonPanic: its handler panicked at its last allowed attempt.
	ReasonPanic = "handler panic"
	// ReasonPermanent: its handler returned an error marked Permanent.
	ReasonPermanent = "permanent error"
	// ReasonDead: Message.Dead was called without a reason.
	ReasonDead = "dead-lettered by its consumer"
	// ReasonNoPayload: its payload was deleted by something other than
	// the queue (its index entry is all that was left).
	ReasonNoPayload = "payload missing"
)

// validID reports whether id has the shape Enqueue gives ids, so that an
// id from a user can never reach outside its own key.
func validID(id string) bool {
	ts, r, ok := strings.Cut(id, "-")
	if !ok || len(ts) != 16 || len(r) != 16 {
		return false
	}
	for _, c := range ts + r {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (q *Queue) deadKey(id string) (string, error) {
	if q.err != nil {
		return "", q.err
	}
	if !validID(id) {
		return "", fmt.Errorf("queue %q: %w: %q is not a message id", q.sp.Name(), ErrInvalid, id)
	}
	return q.sp.Key(partDead, id), nil
}

func deadLetter(id string, val, payload []byte) (DeadLetter, error) {
	rec, err := decodeRecord(val)
	if err != nil {
		return DeadLetter{}, err
	}
	dl := DeadLetter{ID: id, Payload: payload, Attempts: rec.attempts, Priority: rec.prio, Enqueued: unixTime(rec.enqueued),
		Reason: rec.reason, LastError: rec.lastErr}
	for _, t := range rec.times {
		dl.Claimed = append(dl.Claimed, unixTime(t))
	}
	if rec.died != 0 {
		dl.Died = unixTime(rec.died)
	}
	return dl, nil
}

// deadPage is how many dead letters one read of DeadLetters fetches, with
// their payloads in the same Txn.
const deadPage = 64

// DeadLetters lists the dead-letter list, oldest message id first, with
// payloads and reasons. It reads a page of dead letters and their
// payloads per Txn.
func (q *Queue) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	return q.deadLetters(ctx, 0)
}

// FirstDeadLetters is DeadLetters for at most n of them (n > 0), the
// oldest message ids first: a bounded read, for a page that shows a few
// and counts the rest with Stats. It reads at most ceil(n/64) pages.
func (q *Queue) FirstDeadLetters(ctx context.Context, n int) ([]DeadLetter, error) {
	if n < 1 {
		return nil, fmt.Errorf("queue %q: %w: dead letters to read %d < 1", q.sp.Name(), ErrInvalid, n)
	}
	return q.deadLetters(ctx, n)
}

// deadLetters reads up to n dead letters (0: all of them).
func (q *Queue) deadLetters(ctx context.Context, n int) ([]DeadLetter, error) {
	if q.err != nil {
		return nil, q.err
	}
	d := q.sp.Part(partDead)
	var out []DeadLetter
	from := d
	for {
		page := int64(deadPage)
		if n > 0 {
			page = int64(min(deadPage, n-len(out)))
		}
		resp, err := q.cli.Get(ctx, from, clientv3.WithRange(keys.RangeEnd(d)), clientv3.WithLimit(page))
		if err != nil {
			return nil, fmt.Errorf("queue %q: dead letters: %w", q.sp.Name(), err)
		}
		if len(resp.Kvs) == 0 {
			return out, nil
		}
		gets := make([]clientv3.Op, len(resp.Kvs))
		for i, kv := range resp.Kvs {
			gets[i] = clientv3.OpGet(q.sp.Key(partPayload, strings.TrimPrefix(string(kv.Key), d)), clientv3.WithRev(resp.Header.Revision))
		}
		pr, err := q.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return nil, fmt.Errorf("queue %q: dead letters: %w", q.sp.Name(), err)
		}
		for i, kv := range resp.Kvs {
			var payload []byte
			if p := pr.Responses[i].GetResponseRange().Kvs; len(p) > 0 {
				payload = p[0].Value
			}
			dl, err := deadLetter(strings.TrimPrefix(string(kv.Key), d), kv.Value, payload)
			if err != nil {
				continue // not written by this package
			}
			out = append(out, dl)
		}
		if !resp.More || (n > 0 && len(out) >= n) {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// DeadLetter returns one dead letter, or ErrNotFound.
func (q *Queue) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	key, err := q.deadKey(id)
	if err != nil {
		return DeadLetter{}, err
	}
	resp, err := q.cli.Txn(ctx).Then(clientv3.OpGet(key), clientv3.OpGet(q.sp.Key(partPayload, id))).Commit()
	if err != nil {
		return DeadLetter{}, fmt.Errorf("queue %q: dead letter %s: %w", q.sp.Name(), id, err)
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return DeadLetter{}, fmt.Errorf("queue %q: %w: %s", q.sp.Name(), ErrNotFound, id)
	}
	var payload []byte
	if p := resp.Responses[1].GetResponseRange().Kvs; len(p) > 0 {
		payload = p[0].Value
	}
	return deadLetter(id, kvs[0].Value, payload)
}

// Redrive puts a dead letter back in the queue, at its original place in
// line and with its attempts, reason and claim times reset, in one Txn
// fenced on the dead letter being unchanged. It returns ErrNotFound if id
// is not dead (or someone else re-drove or discarded it first), and
// ErrDuplicate if it was Unique and another message with its key is
// pending now.
func (q *Queue) Redrive(ctx context.Context, id string) error {
	return q.moveDead(ctx, id, "redrive", func(key string, rec record) ([]clientv3.Cmp, []clientv3.Op) {
		rec.attempts, rec.reason, rec.lastErr, rec.times, rec.died = 0, "", "", nil, 0
		// Back at its old place, likely below the floor: the floor goes.
		ops := []clientv3.Op{clientv3.OpDelete(key),
			clientv3.OpPut(q.sp.Key(partReady, encodePriority(rec.prio)+"-"+id), string(rec.encode())),
			clientv3.OpDelete(q.floorKey(fr))}
		var cmps []clientv3.Cmp
		if rec.uniq != "" && !rec.uniqLeased {
			uk := q.uniqueKey(rec.uniq)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(uk), "=", 0))
			ops = append(ops, clientv3.OpPut(uk, id))
		}
		return cmps, ops
	})
}

// Discard deletes a dead letter for good, with its payload and its
// idempotency key. It returns ErrNotFound if id is not dead.
func (q *Queue) Discard(ctx context.Context, id string) error {
	return q.moveDead(ctx, id, "discard", func(key string, rec record) ([]clientv3.Cmp, []clientv3.Op) {
		ops := []clientv3.Op{clientv3.OpDelete(key), clientv3.OpDelete(q.sp.Key(partPayload, id))}
		if rec.idem != "" {
			ops = append(ops, clientv3.OpDelete(q.sp.Key(partIdem, keys.Escape(rec.idem))))
		}
		return nil, ops
	})
}

// moveDead reads a dead letter and applies ops to it in a Txn fenced on
// its mod revision, so that two concurrent Redrives move it once.
func (q *Queue) moveDead(ctx context.Context, id, what string, ops func(key string, rec record) ([]clientv3.Cmp, []clientv3.Op)) error {
	key, err := q.deadKey(id)
	if err != nil {
		return err
	}
	resp, err := q.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("queue %q: %s %s: %w", q.sp.Name(), what, id, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("queue %q: %s: %w: %s", q.sp.Name(), what, ErrNotFound, id)
	}
	rec, err := decodeRecord(resp.Kvs[0].Value)
	if err != nil {
		return fmt.Errorf("queue %q: %s %s: %w", q.sp.Name(), what, id, err)
	}
	cmps, then := ops(key, rec)
	tresp, err := q.cli.Txn(ctx).
		If(append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)}, cmps...)...).
		Then(then...).Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return fmt.Errorf("queue %q: %s %s: %w", q.sp.Name(), what, id, err)
	}
	if !tresp.Succeeded {
		if kvs := tresp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && kvs[0].ModRevision == resp.Kvs[0].ModRevision {
			return fmt.Errorf("queue %q: %s %s: %w: another message with its unique key %q is pending", q.sp.Name(), what, id, ErrDuplicate, rec.uniq)
		}
		return fmt.Errorf("queue %q: %s: %w: %s changed meanwhile", q.sp.Name(), what, ErrNotFound, id)
	}
	if what == "redrive" {
		q.opts.metrics.QueueEvent(q.sp.Name(), metrics.QueueRedriven)
	}
	return nil
}

// PurgeDead discards the dead letters older than the queue's
// Config.DeadRetention (by when they died), with their payloads, and
// returns how many it discarded; with no retention set it discards
// nothing. Consumers call it for the queue when they first find it empty
// after they started following it, so a queue with a retention keeps its
// dead-letter list bounded without a cron job; it pages through the
// dead-letter records (small: payloads are read by nobody), never the
// rest of the queue. Each discard is fenced on the dead letter, so a
// concurrent Redrive wins or loses whole.
func (q *Queue) PurgeDead(ctx context.Context) (int, error) {
	cfg, err := q.config(ctx)
	if err != nil {
		return 0, err
	}
	if cfg.DeadRetention <= 0 {
		return 0, nil
	}
	cut := time.Now().Add(-cfg.DeadRetention).UnixNano()
	d := q.sp.Part(partDead)
	from, purged := d, 0
	for {
		resp, err := q.cli.Get(ctx, from, clientv3.WithRange(keys.RangeEnd(d)), clientv3.WithLimit(deadPage))
		if err != nil {
			return purged, fmt.Errorf("queue %q: purge dead letters: %w", q.sp.Name(), err)
		}
		for _, kv := range resp.Kvs {
			rec, err := decodeRecord(kv.Value)
			if err != nil || rec.died == 0 || rec.died > cut {
				continue // not ours, from before died was kept, or young
			}
			id := strings.TrimPrefix(string(kv.Key), d)
			ops := []clientv3.Op{clientv3.OpDelete(string(kv.Key)), clientv3.OpDelete(q.sp.Key(partPayload, id))}
			if rec.idem != "" {
				ops = append(ops, clientv3.OpDelete(q.sp.Key(partIdem, keys.Escape(rec.idem))))
			}
			tr, err := q.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).Then(ops...).Commit()
			if err != nil {
				return purged, fmt.Errorf("queue %q: purge dead letters: %w", q.sp.Name(), err)
			}
			if tr.Succeeded {
				purged++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return purged, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
