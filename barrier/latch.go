package barrier

import (
	"context"
	"fmt"
	"github.com/coord-go/coord/internal/etcderr"
	"strconv"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Latch opens once it has been counted down count times, like Java's
// CountDownLatch, across processes.
//
// Keys: <root>latch/<name>/count holds the count (written by the first
// CountDown); every CountDown adds one key under <root>latch/<name>/d/,
// named by its id, and the latch is open when there are count of them.
// Counting keys, rather than decrementing a number, is what makes a
// CountDown with an id idempotent in one Txn. The keys stay until Delete.
type Latch struct {
	cli   *clientv3.Client
	sp    keys.Space
	count int
	cs    string // count as stored
	err   error
}

// CountDownOption configures one CountDown.
type CountDownOption func(*countDown)

type countDown struct{ id string }

// WithID names the caller of CountDown: the latch counts each id at most
// once, so CountDown can be retried safely. Use an id that identifies the
// unit of work (a task or shard name), not the attempt.
func WithID(id string) CountDownOption { return func(c *countDown) { c.id = id } }

// NewLatch returns the latch called name, which opens after count
// CountDowns. A count of 0 is open from the start. It does not talk to
// etcd; a bad name, a nil client or a negative count is reported, wrapped
// in ErrInvalid, by every method. Every user of a name must pass the same
// count, or get ErrCountMismatch.
func NewLatch(cli *clientv3.Client, name string, count int, opts ...Option) *Latch {
	sp, err := space(cli, keys.KindLatch, name, opts)
	if err == nil && count < 0 {
		err = fmt.Errorf("%w: latch %q: count %d is negative", ErrInvalid, name, count)
	}
	if err != nil {
		return &Latch{err: err}
	}
	return &Latch{cli: cli, sp: sp, count: count, cs: strconv.Itoa(count)}
}

// CountDown counts the latch down by one, in one Txn. With WithID it
// counts each id once, so a retry returns nil without counting again;
// without it, every call counts. Counting down an open latch is harmless.
func (l *Latch) CountDown(ctx context.Context, opts ...CountDownOption) error {
	if l.err != nil {
		return l.err
	}
	var c countDown
	for _, o := range opts {
		o(&c)
	}
	id := anonID()
	if c.id != "" {
		if err := keys.ValidateName(c.id); err != nil {
			return fmt.Errorf("%w: latch %q: id: %w", ErrInvalid, l.sp.Name(), err)
		}
		id = keys.Escape(c.id)
	}
	countKey, idKey := l.sp.Single("count"), l.sp.Key("d", id)
	// The latch counts keys, so putting an id's key again counts nothing
	// new: that is what makes a CountDown with an id idempotent, with no
	// compare on the id. The first CountDown also stores the count; later
	// ones check it. Two top-level Txns at most, never a nested one (some
	// etcd versions do not check permissions inside nested Txns).
	first := false
	for {
		cmp := clientv3.Compare(clientv3.Value(countKey), "=", l.cs)
		then := []clientv3.Op{clientv3.OpPut(idKey, "")}
		if first {
			cmp = clientv3.Compare(clientv3.CreateRevision(countKey), "=", 0)
			then = append(then, clientv3.OpPut(countKey, l.cs))
		}
		resp, err := l.cli.Txn(ctx).If(cmp).Then(then...).Else(clientv3.OpGet(countKey)).Commit()
		if err != nil {
			return fmt.Errorf("latch %q: count down: %w", l.sp.Name(), etcderr.Explain(l.cli, err))
		}
		if resp.Succeeded {
			return nil
		}
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			first = true
			continue
		}
		if err := l.mismatch(resp.Responses[0]); err != nil {
			return err
		}
		first = false // stored by someone else meanwhile, and it matches
	}
}

// Count returns how many CountDowns the latch still needs: 0 once open.
func (l *Latch) Count(ctx context.Context) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	left, _, err := l.read(ctx)
	if err != nil {
		return 0, fmt.Errorf("latch %q: %w", l.sp.Name(), err)
	}
	return left, nil
}

// Wait blocks until the latch is open, or ctx ends. It returns nil only
// after reading from etcd that count CountDowns were made; a broken watch
// or a compaction makes it re-read, never return.
func (l *Latch) Wait(ctx context.Context) error {
	if l.err != nil {
		return l.err
	}
	left, rev, err := l.read(ctx)
	if err != nil {
		return fmt.Errorf("latch %q: wait: %w", l.sp.Name(), err)
	}
	if left == 0 {
		return nil
	}
	err = watch.For(l.cli).Until(ctx, l.sp.Base(), keys.RangeEnd(l.sp.Base()), rev, nil, func(ctx context.Context) (bool, int64, error) {
		left, rev, err := l.read(ctx)
		return left == 0, rev, err
	})
	if err != nil {
		return fmt.Errorf("latch %q: wait: %w", l.sp.Name(), err)
	}
	return nil
}

// Delete removes every key of the latch, so the name starts afresh at
// count. Waiters still blocked keep waiting for the new count.
func (l *Latch) Delete(ctx context.Context) error {
	if l.err != nil {
		return l.err
	}
	if _, err := l.cli.Delete(ctx, l.sp.Base(), clientv3.WithRange(keys.RangeEnd(l.sp.Base()))); err != nil {
		return fmt.Errorf("latch %q: delete: %w", l.sp.Name(), err)
	}
	return nil
}

// read returns the CountDowns still needed, in one Txn.
func (l *Latch) read(ctx context.Context) (left int, rev int64, err error) {
	done := l.sp.Part("d")
	resp, err := l.cli.Txn(ctx).Then(
		clientv3.OpGet(l.sp.Single("count")),
		clientv3.OpGet(done, clientv3.WithRange(keys.RangeEnd(done)), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return 0, 0, err
	}
	if err := l.mismatch(resp.Responses[0]); err != nil {
		return 0, 0, err
	}
	n := resp.Responses[1].GetResponseRange().Count
	return int(max(int64(l.count)-n, 0)), resp.Header.Revision, nil
}

// mismatch checks the stored count in a read of the count key.
func (l *Latch) mismatch(r *pb.ResponseOp) error {
	kvs := r.GetResponseRange().Kvs
	if len(kvs) == 0 || string(kvs[0].Value) == l.cs {
		return nil
	}
	return fmt.Errorf("%w: latch %q has count %s, not %d", ErrCountMismatch, l.sp.Name(), kvs[0].Value, l.count)
}
