package semaphore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Acquire blocks until n permits are granted, ctx ends, or the session
// ends. Requests are granted strictly in the order they were made: a
// request waits until it and every earlier request fit in the capacity
// together, as in golang.org/x/sync/semaphore, so a large request is never
// starved by later small ones.
//
// With enough free permits Acquire costs one Txn, whatever the number of
// requests in the line. A waiting Acquire waits on the process's shared
// mirror of the semaphore (one watch and one read when the process opens
// it, nothing after), and a release grants it with no RPC at all. On a
// cancelled ctx or a lost session it removes its request (with its own
// timeout) and returns the ctx's error or the session's. It returns an
// error wrapping ErrInvalid for n < 1, ErrTooLarge for n above the
// capacity, ErrCapacityMismatch when the stored capacity differs from
// New's, and ErrLost when its request is deleted by someone else while it
// waits.
func (s *Semaphore) Acquire(ctx context.Context, n int64) (*Permit, error) {
	return s.acquire(ctx, n, false)
}

// TryAcquire acquires n permits only if it can do so at once: enough are
// free and no earlier request is waiting. Otherwise it returns
// ErrNoPermits and leaves nothing in etcd. It costs one Txn, and one
// delete of its request when it finds no permits. Its other errors are
// Acquire's.
func (s *Semaphore) TryAcquire(ctx context.Context, n int64) (*Permit, error) {
	return s.acquire(ctx, n, true)
}

// acquire is Acquire and TryAcquire; traced, the call is a wait span and
// the permit a hold span (see trace.go).
func (s *Semaphore) acquire(ctx context.Context, n int64, try bool) (*Permit, error) {
	if s.s == nil {
		return s.acquireOnce(ctx, n, try) // s.err
	}
	wctx, sp := s.startWait(ctx, n)
	p, err := s.acquireOnce(wctx, n, try)
	s.endWait(ctx, wctx, sp, n, p, err)
	return p, err
}

func (s *Semaphore) acquireOnce(ctx context.Context, n int64, try bool) (*Permit, error) {
	if err := s.usable(ctx); err != nil {
		return nil, err
	}
	if err := checkWeight(n); err != nil {
		return nil, s.wrap(err)
	}
	if err := s.fitsCapacity(ctx, n); err != nil {
		return nil, s.wrap(err)
	}
	h := hold.New(s.s, &s.cfg, keys.Record{N: n},
		hold.Key{Key: s.sp.Key("q", s.s.NextID()), Watch: watch.MirrorOf{Hub: s.hub, Base: s.sp.Base()}})
	fits, err := s.enqueue(ctx, h, n)
	if err != nil {
		h.Abandon(ctx)
		return nil, s.wrap(err)
	}
	if !fits {
		err := s.wait(ctx, h, n, try)
		if err != nil {
			h.Abandon(ctx)
			return nil, err
		}
	}
	admit := h.Admit
	if try {
		admit = h.TryAdmit
	}
	if err := admit(ctx); err != nil {
		h.Abandon(ctx)
		if errors.Is(err, hold.ErrDelayed) {
			return nil, s.wrap(fmt.Errorf("%w: a lock-delay is pending", ErrNoPermits))
		}
		return nil, err
	}
	return &Permit{sem: s, h: h, n: n}, nil
}

// enqueue puts the request's key in the line, in one Txn that checks the
// stored capacity is the one we believe (or stores ours if there is none
// yet) and reads the first requests of the line. It says whether the
// request fits by that read; false means "not known from the read".
func (s *Semaphore) enqueue(ctx context.Context, h *hold.Hold, n int64) (bool, error) {
	pfx := s.linePfx()
	// When the process already follows the semaphore, its mirror answers
	// without a read; otherwise the Txn reads the first few requests,
	// which decide for a short line.
	var reads []clientv3.Op
	if !s.hub.Warm(s.sp.Base()) {
		reads = []clientv3.Op{clientv3.OpGet(pfx, clientv3.WithRange(keys.RangeEnd(pfx)), clientv3.WithLimit(window))}
	}
	first := false // no capacity key yet: the first user stores it
	for range maxRetries {
		stored, c := s.belief()
		spec := hold.Spec{
			If:   []clientv3.Cmp{clientv3.Compare(clientv3.Value(s.capKey()), "=", stored)},
			Then: reads,
			Else: []clientv3.Op{clientv3.OpGet(s.capKey())},
		}
		if first {
			spec.If = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.capKey()), "=", 0)}
			spec.Then = append([]clientv3.Op{clientv3.OpPut(s.capKey(), strconv.FormatInt(s.ctor, 10))}, reads...)
			c = s.ctor
		}
		created, err := h.Create(ctx, spec)
		if err != nil {
			return false, err
		}
		switch {
		case created.Existed || (!created.Failed() && len(reads) == 0):
			return false, nil // judge from the mirror
		case !created.Failed():
			r := created.Then[len(created.Then)-1].GetResponseRange()
			if r.More {
				return false, nil
			}
			return capValue{n: c}.holds(created.Rev, ahead(r.Kvs, created.Rev), n), nil
		}
		kvs := created.Else[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			first = true
			continue
		}
		// The stored capacity is not what we believed: adopt it and retry,
		// unless it is a first user's different one.
		cv, err := s.adopt(kvs[0].Value)
		if err != nil {
			return false, err
		}
		first = false
		if n > cv.n {
			return false, fmt.Errorf("%w: request for %d permits, capacity is %d", ErrTooLarge, n, cv.n)
		}
	}
	return false, errors.New("the stored capacity kept changing")
}

// ahead sums the weights of the requests created before rev.
func ahead(kvs []*mvccpb.KeyValue, rev int64) int64 {
	var sum int64
	for _, kv := range kvs {
		if kv.CreateRevision < rev {
			sum += weight(kv.Value)
		}
	}
	return sum
}

// request is what a waiter's rule needs.
type request struct {
	sem *Semaphore
	n   int64
}

// fits is the semaphore's rule, judged on the mirror: a request is
// granted when it and every request before it fit in the capacity, or
// when it was granted before the last capacity change (heldThrough).
func fits(v *watch.View, w *watch.Waiter) (bool, error) {
	r := w.Arg.(request)
	c := capValue{n: r.sem.ctor}
	if e := v.Get(r.sem.capKey()); e != nil {
		cv, err := r.sem.adopt(e.Value)
		if err != nil {
			return false, err
		}
		c = cv
	}
	_, sum := v.Line("q").Ahead(w.Rev)
	if c.holds(w.Rev, sum, r.n) {
		return true, nil
	}
	if r.n > c.n {
		return false, fmt.Errorf("%w: capacity lowered to %d under a waiting request for %d", ErrTooLarge, c.n, r.n)
	}
	return false, nil
}

// wait blocks until the request fits, in the process's mirror: each event
// is applied once for every waiter, and a release grants the waiters it
// lets in with no read at all. With try it only asks, at the request's
// own revision, and gives up with ErrNoPermits.
func (s *Semaphore) wait(ctx context.Context, h *hold.Hold, n int64, try bool) error {
	ctx, cancel := s.s.Bound(ctx) // ends with the session too
	defer cancel()
	m := s.hub.Mirror(s.sp.Base())
	defer m.Release()
	w := &watch.Waiter{Key: h.Key(), Rev: h.Rev(), Arg: request{sem: s, n: n}}
	var err error
	if try {
		var ok bool
		rerr := m.Read(ctx, h.Rev(), func(v *watch.View) {
			if e := v.Get(h.Key()); e == nil || e.CreateRev != h.Rev() {
				err = watch.ErrGone
				return
			}
			ok, err = fits(v, w)
		})
		switch {
		case rerr != nil:
			err = rerr
		case err == nil && !ok:
			return s.wrap(fmt.Errorf("%w: %d requested", ErrNoPermits, n))
		}
	} else {
		s.s.Logger().Debug("coord semaphore waiting", "kind", kind, "name", s.name, "n", n)
		err = m.Waitlist("fits", fits).Wait(ctx, w)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, watch.ErrGone) {
		s.s.Verify(context.WithoutCancel(ctx))
		if serr := s.s.Err(); serr != nil {
			return s.wrap(fmt.Errorf("%w: %w", ErrLost, serr))
		}
		return s.wrap(fmt.Errorf("%w: key %s was deleted", ErrLost, h.Key()))
	}
	if serr := s.s.Err(); serr != nil {
		return s.wrap(serr)
	}
	return s.wrap(err)
}
