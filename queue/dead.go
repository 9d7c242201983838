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

// DeadLetter is a message that reached MaxAttempts, as kept in the
// dead-letter list.
type DeadLetter struct {
	ID       string
	Payload  []byte
	Attempts int // claims made before it was dead-lettered
	Priority int
	Enqueued time.Time
}

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

func deadLetter(id string, val []byte) (DeadLetter, error) {
	rec, err := decodeRecord(val)
	if err != nil {
		return DeadLetter{}, err
	}
	return DeadLetter{ID: id, Payload: rec.payload, Attempts: rec.attempts, Priority: rec.prio, Enqueued: unixTime(rec.enqueued)}, nil
}

// DeadLetters lists the dead-letter list, oldest message id first, with
// payloads.
func (q *Queue) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	if q.err != nil {
		return nil, q.err
	}
	d := q.sp.Part(partDead)
	resp, err := q.cli.Get(ctx, d, clientv3.WithRange(keys.RangeEnd(d)))
	if err != nil {
		return nil, fmt.Errorf("queue %q: dead letters: %w", q.sp.Name(), err)
	}
	out := make([]DeadLetter, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		dl, err := deadLetter(strings.TrimPrefix(string(kv.Key), d), kv.Value)
		if err != nil {
			continue // not written by this package
		}
		out = append(out, dl)
	}
	return out, nil
}

// DeadLetter returns one dead letter, or ErrNotFound.
func (q *Queue) DeadLetter(ctx context.Context, id string) (DeadLetter, error) {
	key, err := q.deadKey(id)
	if err != nil {
		return DeadLetter{}, err
	}
	resp, err := q.cli.Get(ctx, key)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("queue %q: dead letter %s: %w", q.sp.Name(), id, err)
	}
	if len(resp.Kvs) == 0 {
		return DeadLetter{}, fmt.Errorf("queue %q: %w: %s", q.sp.Name(), ErrNotFound, id)
	}
	return deadLetter(id, resp.Kvs[0].Value)
}

// Redrive puts a dead letter back in the queue, at its original place in
// line and with its attempts reset, in one Txn fenced on the dead letter
// being unchanged. It returns ErrNotFound if id is not dead (or someone
// else re-drove or discarded it first).
func (q *Queue) Redrive(ctx context.Context, id string) error {
	return q.moveDead(ctx, id, "redrive", func(key string, rec record) []clientv3.Op {
		rec.attempts = 0
		return []clientv3.Op{clientv3.OpDelete(key),
			clientv3.OpPut(q.sp.Key(partReady, encodePriority(rec.prio)+"-"+id), string(rec.encode()))}
	})
}

// Discard deletes a dead letter for good, and its idempotency key with it.
// It returns ErrNotFound if id is not dead.
func (q *Queue) Discard(ctx context.Context, id string) error {
	return q.moveDead(ctx, id, "discard", func(key string, rec record) []clientv3.Op {
		ops := []clientv3.Op{clientv3.OpDelete(key)}
		if rec.idem != "" {
			ops = append(ops, clientv3.OpDelete(q.sp.Key(partIdem, keys.Escape(rec.idem))))
		}
		return ops
	})
}

// moveDead reads a dead letter and applies ops to it in a Txn fenced on
// its mod revision, so that two concurrent Redrives move it once.
func (q *Queue) moveDead(ctx context.Context, id, what string, ops func(key string, rec record) []clientv3.Op) error {
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
	tresp, err := q.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
		Then(ops(key, rec)...).Commit()
	if err != nil {
		return fmt.Errorf("queue %q: %s %s: %w", q.sp.Name(), what, id, err)
	}
	if !tresp.Succeeded {
		return fmt.Errorf("queue %q: %s: %w: %s changed meanwhile", q.sp.Name(), what, ErrNotFound, id)
	}
	if what == "redrive" {
		q.opts.metrics.QueueEvent(q.sp.Name(), metrics.QueueRedriven)
	}
	return nil
}
