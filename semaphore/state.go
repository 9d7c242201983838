package semaphore

import (
	"context"

	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Holder is one request in a semaphore's line, as State reports it.
type Holder struct {
	Key    string           // the request's etcd key
	Lease  clientv3.LeaseID // the requester's session lease
	Weight int64            // permits held or asked for
	Token  int64            // fencing token: the key's create revision
}

// State is a consistent snapshot of a semaphore, from one read.
type State struct {
	Capacity int64
	Holders  []Holder // holding permits, in the order they were granted
	Waiting  []Holder // not yet granted, in line order
}

// snapshot is what a read saw, for Txns that must not act on a stale one.
type snapshot struct {
	rev    int64    // the revision of the read
	capMod int64    // the capacity key's mod revision, 0 if absent
	line   []Holder // every request, in line order
}

// Available returns the permits free now: the capacity less the permits
// held, or 0 while the permits held exceed a lowered capacity. A request
// for that many is granted at once unless one is waiting. One read.
func (s *Semaphore) Available(ctx context.Context) (int64, error) {
	st, err := s.State(ctx)
	if err != nil {
		return 0, err
	}
	var held int64
	for _, h := range st.Holders {
		held += h.Weight
	}
	return max(st.Capacity-held, 0), nil
}

// Holders returns the current holders with their weights and tokens, in
// the order they were granted. One read.
func (s *Semaphore) Holders(ctx context.Context) ([]Holder, error) {
	st, err := s.State(ctx)
	return st.Holders, err
}

// State reads the capacity and the whole line in one read and splits the
// line by the rule Acquire grants by. A request counts as holding from the
// revision at which the rule grants it, which may be a moment before its
// Acquire returns. It returns ErrCapacityMismatch as Acquire does.
func (s *Semaphore) State(ctx context.Context) (State, error) {
	if err := s.usable(ctx); err != nil {
		return State{}, s.wrap(err)
	}
	st, _, err := s.read(ctx, true)
	return st, s.wrap(err)
}

// read takes a snapshot of the capacity and the line. With strict, a
// first user's capacity other than ours is ErrCapacityMismatch.
func (s *Semaphore) read(ctx context.Context, strict bool) (State, snapshot, error) {
	pfx := s.linePfx()
	resp, err := s.s.Client().Txn(ctx).Then(clientv3.OpGet(s.capKey()),
		clientv3.OpGet(pfx, clientv3.WithRange(keys.RangeEnd(pfx)),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))).Commit()
	if err != nil {
		return State{}, snapshot{}, err
	}
	snap := snapshot{rev: resp.Header.Revision}
	c := capValue{n: s.ctor}
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		snap.capMod = kvs[0].ModRevision
		if strict {
			c, err = s.adopt(kvs[0].Value)
		} else {
			c, err = parseCap(kvs[0].Value)
		}
		if err != nil {
			return State{}, snapshot{}, err
		}
	}
	st := State{Capacity: c.n}
	var ahead int64
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		h := Holder{Key: string(kv.Key), Lease: clientv3.LeaseID(kv.Lease), Weight: weight(kv.Value), Token: kv.CreateRevision}
		snap.line = append(snap.line, h)
		if h.Token <= c.heldThrough || (len(st.Waiting) == 0 && c.holds(h.Token, ahead, h.Weight)) {
			st.Holders = append(st.Holders, h)
		} else {
			st.Waiting = append(st.Waiting, h)
		}
		ahead += h.Weight
	}
	return st, snap, nil
}
