package semaphore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Acquire blocks until n permits are granted, ctx ends, or the session
// ends. Requests are granted strictly in the order they were made: a
// request waits until it and every earlier request fit in the capacity
// together, as in golang.org/x/sync/semaphore, so a large request is never
// starved by later small ones.
//
// With enough free permits Acquire costs one Txn. A waiting Acquire adds
// no RPC while the Semaphore's shared watch is open, and one watch and one
// read when it has to open it. On a cancelled ctx or a
// lost session it removes its request (with its own timeout) and returns
// the ctx's error or the session's. It returns an error wrapping
// ErrInvalid for n < 1, ErrTooLarge for n above the capacity,
// ErrCapacityMismatch when the stored capacity differs from New's, and
// ErrLost when its request is deleted by someone else while it waits.
func (s *Semaphore) Acquire(ctx context.Context, n int64) (*Permit, error) {
	start := time.Now()
	if err := s.usable(ctx); err != nil {
		return nil, s.wrap(err)
	}
	if err := checkWeight(n); err != nil {
		return nil, s.wrap(err)
	}
	if err := s.fitsCapacity(ctx, n); err != nil {
		return nil, s.wrap(err)
	}
	l, err := s.enqueue(ctx, n)
	if err != nil {
		return nil, s.wrap(err)
	}
	if !l.fits() {
		m := s.s.Metrics()
		m.Waiting(kind, s.name, 1)
		s.s.Logger().Debug("coord semaphore waiting", "name", s.name, "n", n, "ahead", l.sum, "capacity", l.capacity.n)
		err := s.wait(ctx, l)
		m.Waiting(kind, s.name, -1)
		if err != nil {
			s.abandon(ctx, l.own)
			return nil, s.wrap(err)
		}
	}
	// A grant delivered late (held up in a partition) may come after the
	// lease stopped being trustworthy: never hand out such a permit.
	if err := s.s.Err(); err != nil {
		s.abandon(ctx, l.own)
		return nil, s.wrap(err)
	}
	return s.granted(l.own, l.rev, n, start), nil
}

// TryAcquire acquires n permits only if it can do so at once: enough are
// free and no earlier request is waiting. Otherwise it returns
// ErrNoPermits and leaves nothing in etcd. It costs one read, plus one Txn
// when it succeeds. Its other errors are Acquire's.
func (s *Semaphore) TryAcquire(ctx context.Context, n int64) (*Permit, error) {
	start := time.Now()
	if err := s.usable(ctx); err != nil {
		return nil, s.wrap(err)
	}
	if err := checkWeight(n); err != nil {
		return nil, s.wrap(err)
	}
	cli := s.s.Client()
	pfx := s.linePfx()
	own := s.sp.Key("q", s.s.NextID())
	for range maxRetries {
		st, snap, err := s.read(ctx, true)
		if err != nil {
			return nil, s.wrap(err)
		}
		c := st.Capacity
		if n > c {
			return nil, s.wrap(fmt.Errorf("%w: request for %d permits, capacity is %d", ErrTooLarge, n, c))
		}
		var sum int64
		for _, h := range snap.line {
			sum += h.Weight
		}
		if sum+n > c {
			return nil, s.wrap(fmt.Errorf("%w: %d requested, %d of %d taken or asked for earlier", ErrNoPermits, n, sum, c))
		}
		rev := snap.rev
		capCmp := clientv3.Compare(clientv3.ModRevision(s.capKey()), "=", snap.capMod)
		var capOps []clientv3.Op
		if snap.capMod == 0 {
			capOps = []clientv3.Op{clientv3.OpPut(s.capKey(), strconv.FormatInt(s.ctor, 10))}
		}
		// Granted only if the line gained no key since the read (keys that
		// left only free permits) and the capacity did not change.
		noNewer := clientv3.Compare(clientv3.CreateRevision(pfx), "<", rev+1).WithRange(keys.RangeEnd(pfx))
		put := s.s.PutOwn(own, strconv.FormatInt(n, 10))
		tresp, err := cli.Txn(ctx).If(capCmp, noNewer).Then(append(capOps, put)...).Commit()
		if err != nil {
			// The put may have landed; take it back.
			s.abandon(ctx, own)
			return nil, s.wrap(err)
		}
		if tresp.Succeeded {
			if err := s.s.Err(); err != nil { // granted too late to trust
				s.abandon(ctx, own)
				return nil, s.wrap(err)
			}
			return s.granted(own, tresp.Header.Revision, n, start), nil
		}
	}
	return nil, s.wrap(fmt.Errorf("%w: the line kept changing", ErrNoPermits))
}

// line is a waiting request's view of the semaphore: the weights of the
// requests made before it (holders and waiters alike) and the capacity.
// Requests made later never matter, so the request is granted exactly
// when sum+n fits, and only deletions of earlier keys or a capacity
// change can bring that about.
type line struct {
	own      string
	rev      int64 // create revision of own: the fencing token
	n        int64
	earlier  map[string]int64
	sum      int64
	capacity capValue
	since    int64 // the revision the view is current at
}

func (l *line) fits() bool { return l.capacity.holds(l.rev, l.sum, l.n) }

func (l *line) load(kvs []*mvccpb.KeyValue) {
	l.earlier, l.sum = make(map[string]int64, len(kvs)), 0
	for _, kv := range kvs {
		if kv.CreateRevision < l.rev {
			w := weight(kv.Value)
			l.earlier[string(kv.Key)] = w
			l.sum += w
		}
	}
}

// enqueue puts the request's key in the line and reads the line, in one
// Txn that also checks the stored capacity is the one we believe, or
// stores ours if there is none yet.
func (s *Semaphore) enqueue(ctx context.Context, n int64) (*line, error) {
	cli := s.s.Client()
	pfx := s.linePfx()
	own := s.sp.Key("q", s.s.NextID())
	put := s.s.PutOwn(own, strconv.FormatInt(n, 10))
	list := clientv3.OpGet(pfx, clientv3.WithRange(keys.RangeEnd(pfx)))
	create := clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.capKey()), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(s.capKey(), strconv.FormatInt(s.ctor, 10)), put, list},
		[]clientv3.Op{clientv3.OpGet(s.capKey())})
	for range maxRetries {
		stored, c := s.belief()
		resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(s.capKey()), "=", stored)).
			Then(put, list).Else(create).Commit()
		if err != nil {
			// The outcome is unknown; the key may exist.
			s.abandon(ctx, own)
			return nil, err
		}
		l := &line{own: own, rev: resp.Header.Revision, n: n, capacity: capValue{n: c}, since: resp.Header.Revision}
		if resp.Succeeded {
			l.load(resp.Responses[1].GetResponseRange().Kvs)
			return l, nil
		}
		inner := resp.Responses[0].GetResponseTxn()
		if inner.Succeeded {
			l.capacity = capValue{n: s.ctor}
			l.load(inner.Responses[2].GetResponseRange().Kvs)
			return l, nil
		}
		// The stored capacity is not what we believed: adopt it and retry,
		// unless it is a first user's different one.
		cv, err := s.adopt(inner.Responses[0].GetResponseRange().Kvs[0].Value)
		if err != nil {
			return nil, err
		}
		if c = cv.n; n > c {
			return nil, fmt.Errorf("%w: request for %d permits, capacity is %d", ErrTooLarge, n, c)
		}
	}
	return nil, errors.New("the stored capacity kept changing")
}
