package queue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/coord-go/coord/internal/etcderr"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/metrics"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrDuplicate is returned by Enqueue and EnqueueBatch when a message with
// the same Unique key is still pending or in flight (or, for UniqueFor,
// was enqueued within its period): nothing is enqueued, and Enqueue's id
// is the existing message's.
var ErrDuplicate = errors.New("queue: duplicate of a unique message")

// DefaultMaxTxnOps is etcd's default limit on the ops of one Txn
// (--max-txn-ops), which bounds a batch (see WithMaxTxnOps).
const DefaultMaxTxnOps = 128

// EnqueueOption configures one Enqueue.
type EnqueueOption func(*enqueueOptions)

type enqueueOptions struct {
	prio      int
	delay     time.Duration
	idem      string
	uniq      string
	uniqFor   time.Duration
	uniqLease clientv3.LeaseID
	err       error
}

// WithPriority sets the message's priority: lower values are claimed
// first, FIFO within a priority. The default is 0; negatives are allowed.
func WithPriority(p int) EnqueueOption { return func(o *enqueueOptions) { o.prio = p } }

// WithDelay makes the message claimable only after d. A negative d is an
// error.
func WithDelay(d time.Duration) EnqueueOption {
	return func(o *enqueueOptions) {
		if d < 0 {
			o.err = fmt.Errorf("%w: delay %v is negative", ErrInvalid, d)
		}
		o.delay = d
	}
}

// WithIdempotencyKey makes Enqueue a no-op that returns the first
// message's id (and no error) when a message with the same key is still
// in the queue (ready, delayed, claimed or dead), so a producer can retry
// an Enqueue whose outcome it does not know. The key is forgotten when
// that message is acked or discarded.
//
// It is for retrying one request. To refuse a second request for work
// already queued, use Unique: it returns ErrDuplicate instead.
func WithIdempotencyKey(key string) EnqueueOption {
	return func(o *enqueueOptions) {
		if err := keys.ValidateName(key); err != nil {
			o.err = fmt.Errorf("%w: idempotency key: %w", ErrInvalid, err)
		}
		o.idem = key
	}
}

// Unique refuses the message with ErrDuplicate while another message with
// the same key is pending or in flight (ready, delayed or claimed); once
// that one is acked or dead-lettered, the key is free again. The check is
// made in the enqueue Txn itself, so of two producers racing with the
// same key exactly one enqueues.
func Unique(key string) EnqueueOption {
	return func(o *enqueueOptions) {
		if err := keys.ValidateName(key); err != nil {
			o.err = fmt.Errorf("%w: unique key: %w", ErrInvalid, err)
		}
		o.uniq, o.uniqFor = key, 0
	}
}

// UniqueFor refuses the message with ErrDuplicate for d after a message
// with the same key was enqueued, whatever became of it (a "once per
// period" job). The period is timed by etcd (the key lives on a lease of
// d, rounded up to a whole second and the server's minimum lease), so it
// costs one lease grant per Enqueue. d must be positive.
func UniqueFor(key string, d time.Duration) EnqueueOption {
	return func(o *enqueueOptions) {
		if err := keys.ValidateName(key); err != nil {
			o.err = fmt.Errorf("%w: unique key: %w", ErrInvalid, err)
		}
		if d <= 0 {
			o.err = fmt.Errorf("%w: unique period %v is not positive", ErrInvalid, d)
		}
		o.uniq, o.uniqFor = key, d
	}
}

// WithMaxTxnOps tells the Queue the server's --max-txn-ops when it is not
// etcd's default (DefaultMaxTxnOps), which bounds EnqueueBatch.
func WithMaxTxnOps(n int) Option {
	return func(o *options) {
		if n < 4 {
			o.err = fmt.Errorf("%w: max txn ops %d (at least 4)", ErrInvalid, n)
		}
		o.maxTxnOps = n
	}
}

// Entry is one message of EnqueueBatch.
type Entry struct {
	Payload []byte
	Options []EnqueueOption
}

// newID returns a message id: the enqueue time in 16 hex digits (strictly
// increasing within this Queue value, so one producer is FIFO) and 8
// random bytes, so producers never collide.
func (q *Queue) newID() (string, int64) {
	q.mu.Lock()
	ns := max(time.Now().UnixNano(), q.lastNS+1)
	q.lastNS = ns
	q.mu.Unlock()
	var r [8]byte
	rand.Read(r[:])
	return encodeTime(ns) + "-" + hex.EncodeToString(r[:]), ns
}

// planned is one message of an enqueue Txn: its id, its puts, and the
// keys that must be absent for it (idempotency, unique).
type planned struct {
	id     string
	puts   []clientv3.Op
	absent []string
	idem   string // the idempotency key's etcd key, if any
	entry  string // its index entry (ready, or delayed)
	bytes  int
}

func (q *Queue) plan(payload []byte, opts []EnqueueOption) (planned, enqueueOptions, error) {
	var o enqueueOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return planned{}, o, fmt.Errorf("queue %q: %w", q.sp.Name(), o.err)
	}
	if len(payload) > q.opts.maxPayload {
		return planned{}, o, fmt.Errorf("queue %q: %w: %d bytes, over the %d-byte limit", q.sp.Name(), ErrTooLarge, len(payload), q.opts.maxPayload)
	}
	id, ns := q.newID()
	rec := record{prio: o.prio, enqueued: ns, idem: o.idem}
	if o.uniq != "" {
		rec.uniq, rec.uniqLeased = o.uniq, o.uniqFor > 0
	}
	key := q.sp.Key(partReady, encodePriority(o.prio)+"-"+id)
	if o.delay > 0 {
		key = q.sp.Key(partTimed, encodeTime(ns+int64(o.delay))+"-"+encodePriority(o.prio)+"-"+id)
	}
	p := planned{id: id, bytes: len(payload) + 2*len(key) + 64}
	p.entry = key
	p.puts = []clientv3.Op{clientv3.OpPut(key, string(rec.encode())), clientv3.OpPut(q.sp.Key(partPayload, id), string(payload))}
	if o.idem != "" {
		p.idem = q.sp.Key(partIdem, keys.Escape(o.idem))
		p.absent = append(p.absent, p.idem)
		p.puts = append(p.puts, clientv3.OpPut(p.idem, id))
	}
	if o.uniq != "" {
		uk := q.uniqueKey(o.uniq)
		p.absent = append(p.absent, uk)
		if o.uniqFor > 0 {
			p.puts = append(p.puts, clientv3.OpPut(uk, id, clientv3.WithLease(o.uniqLease)))
		} else {
			p.puts = append(p.puts, clientv3.OpPut(uk, id))
		}
	}
	return p, o, nil
}

func (q *Queue) uniqueKey(key string) string { return q.sp.Key(partUnique, keys.Escape(key)) }

// Enqueue adds payload to the queue and returns the message's id. It is
// one Txn (its index entry and its payload, written together; UniqueFor
// adds a lease grant). Without an idempotency key, an Enqueue that fails
// with a network error may or may not have added the message. It returns
// ErrTooLarge for a payload over the limit, ErrInvalid for bad options,
// and ErrDuplicate (with the existing message's id) for a Unique key in
// use, in every case without writing anything.
func (q *Queue) Enqueue(ctx context.Context, payload []byte, opts ...EnqueueOption) (string, error) {
	ids, err := q.enqueue(ctx, []Entry{{Payload: payload, Options: opts}})
	if len(ids) == 1 {
		return ids[0], err
	}
	return "", err
}

// EnqueueBatch adds the entries in one Txn: all of them or, on any error,
// none. It returns their ids in order. A batch must fit in one etcd
// request: every message takes two ops (three with an idempotency or
// unique key) of the server's --max-txn-ops (DefaultMaxTxnOps: 64 plain
// messages), and their payloads together must fit the request limit (see
// WithMaxPayload); a batch that does not is ErrTooLarge, before anything
// is sent. A batch with a unique key in use is ErrDuplicate, naming the
// key, unless every entry has an idempotency key already in use (a
// retried batch), which returns the existing ids.
func (q *Queue) EnqueueBatch(ctx context.Context, entries []Entry) ([]string, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	return q.enqueue(ctx, entries)
}

func (q *Queue) enqueue(ctx context.Context, entries []Entry) ([]string, error) {
	if q.err != nil {
		return nil, q.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := q.config(ctx); err != nil {
		return nil, err
	}
	// One batch cannot name a unique or idempotency key twice (etcd
	// refuses a Txn that writes one key twice): say so before any lease is
	// granted.
	type named struct{ what, key string }
	seen := map[named]bool{}
	for _, e := range entries {
		var o enqueueOptions
		for _, opt := range e.Options {
			opt(&o)
		}
		for _, k := range []named{{"unique", o.uniq}, {"idempotency", o.idem}} {
			if k.key == "" {
				continue
			}
			if seen[k] {
				return nil, fmt.Errorf("queue %q: %w: the batch has %s key %q twice", q.sp.Name(), ErrInvalid, k.what, k.key)
			}
			seen[k] = true
		}
	}
	// Leases for UniqueFor, one per period, granted first.
	leases := map[time.Duration]clientv3.LeaseID{}
	var granted []clientv3.LeaseID
	revoke := func() {
		for _, id := range granted {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			q.cli.Revoke(rctx, id)
			cancel()
		}
	}
	var ps []planned
	var cmps []clientv3.Cmp
	var then, els []clientv3.Op
	var absent []string
	var low floors // the lowest entries of the batch, by range
	size, allIdem := 0, true
	for _, e := range entries {
		var o enqueueOptions
		for _, opt := range e.Options {
			opt(&o)
		}
		lease := clientv3.LeaseID(0)
		if o.err == nil && o.uniqFor > 0 {
			if id, ok := leases[o.uniqFor]; ok {
				lease = id
			} else {
				ttl := int64((o.uniqFor + time.Second - 1) / time.Second)
				g, err := q.cli.Grant(ctx, ttl)
				if err != nil {
					revoke()
					return nil, fmt.Errorf("queue %q: unique period: %w", q.sp.Name(), err)
				}
				leases[o.uniqFor], lease = g.ID, g.ID
				granted = append(granted, g.ID)
			}
		}
		opts := e.Options
		if lease != 0 {
			opts = append(opts[:len(opts):len(opts)], func(o *enqueueOptions) { o.uniqLease = lease })
		}
		p, _, err := q.plan(e.Payload, opts)
		if err != nil {
			revoke()
			return nil, err
		}
		ps = append(ps, p)
		then = append(then, p.puts...)
		for _, k := range p.absent {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			els = append(els, clientv3.OpGet(k))
			absent = append(absent, k)
		}
		allIdem = allIdem && p.idem != ""
		if i := q.floorOfKey(p.entry); low[i] == "" || p.entry < low[i] {
			low[i] = p.entry
		}
		size += p.bytes
	}
	maxOps := q.txnOps()
	switch {
	case len(then) > maxOps || len(cmps) > maxOps:
		revoke()
		return nil, fmt.Errorf("queue %q: %w: a batch of %d messages takes %d ops, over the server's %d per Txn (--max-txn-ops)", q.sp.Name(), ErrTooLarge, len(entries), len(then), maxOps)
	case size > q.opts.maxPayload+64<<10 && len(entries) > 1:
		revoke()
		return nil, fmt.Errorf("queue %q: %w: a batch of %d bytes, over the %d-byte request limit", q.sp.Name(), ErrTooLarge, size, q.opts.maxPayload)
	}
	resp, err := q.commitAbove(ctx, low, cmps, then, els)
	if err != nil {
		revoke()
		return nil, err
	}
	ids := make([]string, len(ps))
	if resp.Succeeded {
		for i, p := range ps {
			ids[i] = p.id
		}
		for range ps {
			q.opts.metrics.QueueEvent(q.sp.Name(), metrics.QueueEnqueued)
		}
		return ids, nil
	}
	revoke()
	// Who holds the keys: a retried batch of idempotent messages gets the
	// ids it had; anything else is a duplicate.
	holder := map[string]string{}
	for i, k := range absent {
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			holder[k] = string(kvs[0].Value)
		}
	}
	retried := allIdem
	for i, p := range ps {
		id, ok := holder[p.idem]
		if !ok {
			retried = false
			break
		}
		ids[i] = id
	}
	if retried {
		return ids, nil
	}
	for i, p := range ps {
		for _, k := range p.absent {
			if id, ok := holder[k]; ok && k != p.idem {
				ids[i] = id
				if len(ps) == 1 {
					return ids, fmt.Errorf("queue %q: %w: message %s has the key", q.sp.Name(), ErrDuplicate, id)
				}
				return nil, fmt.Errorf("queue %q: %w: entry %d's key is held by message %s; nothing was enqueued", q.sp.Name(), ErrDuplicate, i, id)
			}
		}
	}
	for i, p := range ps {
		if id, ok := holder[p.idem]; ok {
			if len(ps) == 1 {
				ids[i] = id
				return ids, nil // the idempotent no-op
			}
			return nil, fmt.Errorf("queue %q: %w: entry %d's idempotency key is held by message %s, and not every entry's is; nothing was enqueued", q.sp.Name(), ErrDuplicate, i, id)
		}
	}
	return nil, fmt.Errorf("queue %q: enqueue refused for a key that then vanished; retry", q.sp.Name())
}

// commitAbove commits an enqueue Txn whose lowest entries are low (by
// range, "" for none), keeping each range's floor at or below its entry
// (belowFloors). When a floor was not what the process thought (the Txn
// failed with every key of absent free), it tries again with the floors
// the failed Txn read.
func (q *Queue) commitAbove(ctx context.Context, low floors, cmps []clientv3.Cmp, then, els []clientv3.Op) (*clientv3.TxnResponse, error) {
	if low == (floors{}) {
		resp, err := q.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err != nil {
			return nil, q.wrapPutErr(err)
		}
		return resp, nil
	}
	els = append(els[:len(els):len(els)], q.floorsOp())
	var resp *clientv3.TxnResponse
	err := q.belowFloors(ctx, "enqueue", low, func(fcs []clientv3.Cmp) (bool, *floors, error) {
		var err error
		resp, err = q.cli.Txn(ctx).If(append(cmps[:len(cmps):len(cmps)], fcs...)...).Then(then...).Else(els...).Commit()
		if err != nil {
			return false, nil, q.wrapPutErr(err)
		}
		if resp.Succeeded {
			return false, nil, nil
		}
		for _, r := range resp.Responses[:len(els)-1] {
			if len(r.GetResponseRange().Kvs) > 0 {
				return false, nil, nil // a key in use: the caller says which
			}
		}
		at := q.readFloors(resp.Responses[len(els)-1].GetResponseRange().Kvs)
		for i := range at {
			q.sawFloor(i, at[i], resp.Header.Revision)
		}
		return true, &at, nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (q *Queue) wrapPutErr(err error) error {
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCRequestTooLarge) || errors.Is(err, rpctypes.ErrGRPCTooManyOps) {
		return fmt.Errorf("queue %q: %w: %w", q.sp.Name(), ErrTooLarge, err)
	}
	return fmt.Errorf("queue %q: enqueue: %w", q.sp.Name(), etcderr.WrapNoSpace(err))
}
