package barrier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DoubleBarrier lets count participants start together (Enter returns
// when count have entered) and finish together (Leave returns when all of
// them have left). It is reusable: the next round starts once the previous
// one has left. One DoubleBarrier value is one participant.
//
// Keys, under <root>dbarrier/<name>/: "count" stores the count; each
// participant has a key under "p/" on its session's lease, made and let go
// through the same lifecycle as a lock's; "round" holds the create
// revision of the last participant of the last full round. A participant
// belongs to that round if its key is no newer than it, and to the round
// now filling otherwise, so a straggler of one round is never counted in
// the next.
type DoubleBarrier struct {
	s     *lease.Session
	cli   *clientv3.Client
	hub   *watch.Hub
	sp    keys.Space
	count int
	cs    string
	err   error
	cfg   hold.Config

	mu    sync.Mutex
	h     *hold.Hold // the participant's key while entered
	round int64      // the round's boundary while entered or leaving, else 0
}

// NewDouble returns participant of the double barrier called name, for
// rounds of count participants, with its key on s's lease. It does not
// talk to etcd; a nil session, a bad name or a count under 1 is reported,
// wrapped in ErrInvalid, by Enter and Leave.
func NewDouble(s *session.Session, name string, count int) *DoubleBarrier {
	if s == nil {
		return &DoubleBarrier{err: fmt.Errorf("%w: nil session", ErrInvalid)}
	}
	l := lease.Of(s)
	sp, err := keys.New(l.Root(), keys.KindDouble, name)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %w", ErrInvalid, err)
	case count < 1:
		err = fmt.Errorf("%w: double barrier %q: count %d is under 1", ErrInvalid, name, count)
	}
	return &DoubleBarrier{s: l, cli: l.Client(), hub: watch.For(l.Client()), sp: sp, count: count, cs: strconv.Itoa(count), err: err,
		cfg: hold.Config{Kind: keys.KindDouble, Names: []string{name}, Label: fmt.Sprintf("double barrier %q", name),
			Noun: "participant", Errors: hold.Errors{Lost: ErrLost, NotHeld: ErrNotEntered}}}
}

// state is one consistent read of the barrier.
type state struct {
	rev      int64
	round    int64   // boundary of the last full round, 0 if none
	roundMod int64   // mod revision of the round key, 0 if none
	old      int     // participants of that round still inside
	cur      []int64 // create revisions of the filling round, oldest first
	own      bool    // the caller's key exists (when it has one)
}

// readOps reads the round and the participants. Participants are at most
// a few rounds' worth, so reading them all (sorted) is cheap.
func (d *DoubleBarrier) readOps() []clientv3.Op {
	p := d.sp.Part("p")
	return []clientv3.Op{
		clientv3.OpGet(d.sp.Single("round")),
		clientv3.OpGet(p, clientv3.WithRange(keys.RangeEnd(p)), clientv3.WithKeysOnly(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)),
	}
}

func (d *DoubleBarrier) parse(rev int64, rs []*pb.ResponseOp, own string) state {
	st := state{rev: rev}
	if kvs := rs[0].GetResponseRange().Kvs; len(kvs) > 0 {
		st.round, _ = strconv.ParseInt(string(kvs[0].Value), 10, 64)
		st.roundMod = kvs[0].ModRevision
	}
	for _, kv := range rs[1].GetResponseRange().Kvs {
		if string(kv.Key) == own {
			st.own = true
		}
		if kv.CreateRevision <= st.round {
			st.old++
		} else {
			st.cur = append(st.cur, kv.CreateRevision)
		}
	}
	return st
}

func (d *DoubleBarrier) read(ctx context.Context, own string) (state, error) {
	resp, err := d.cli.Txn(ctx).Then(d.readOps()...).Commit()
	if err != nil {
		return state{}, err
	}
	return d.parse(resp.Header.Revision, resp.Responses, own), nil
}

// Enter adds this participant to the round now filling and blocks until
// the round has count participants. It returns ErrFull, leaving nothing
// behind, when the round is already full or the previous round is still
// leaving; ErrEntered if called twice; the session's error if the session
// ends; ctx's error if ctx ends, after deleting the participant's key. An
// Enter whose request fails (its answer lost) deletes its key too, so it
// never leaves a ghost participant for the others' Leave to wait on. An
// Enter cancelled at the very moment its round fills may already have
// been counted; the others then see it as a participant that entered and
// left at once, and their Leave does not wait for it.
func (d *DoubleBarrier) Enter(ctx context.Context) error {
	if d.err != nil {
		return d.err
	}
	if err := d.s.Err(); err != nil {
		return fmt.Errorf("double barrier %q: enter: %w", d.sp.Name(), err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h != nil || d.round != 0 {
		return fmt.Errorf("double barrier %q: %w", d.sp.Name(), ErrEntered)
	}
	h := hold.New(d.s, &d.cfg, keys.Record{},
		hold.Key{Key: d.sp.Key("p", d.s.NextID()), Watch: watch.RangeOf{Hub: d.hub, Key: d.sp.Base(), End: keys.RangeEnd(d.sp.Base())}})
	st, err := d.enter(ctx, h)
	if err != nil {
		h.Abandon(ctx)
		return fmt.Errorf("double barrier %q: enter: %w", d.sp.Name(), err)
	}
	if st.old > 0 || position(st.cur, h.Rev()) >= d.count {
		h.Abandon(ctx)
		why := "round full"
		if st.old > 0 {
			why = fmt.Sprintf("%d participants of the previous round have not left", st.old)
		}
		return fmt.Errorf("double barrier %q: %w (%s)", d.sp.Name(), ErrFull, why)
	}
	round, err := d.awaitFull(ctx, h, st)
	if err == nil {
		err = h.Grant()
	}
	if err != nil {
		h.Abandon(ctx)
		return fmt.Errorf("double barrier %q: enter: %w", d.sp.Name(), err)
	}
	d.h, d.round = h, round
	d.s.Logger().Debug("coord double barrier entered", "kind", keys.KindDouble, "name", d.sp.Name(), "token", h.Rev(), "round", round)
	return nil
}

// enter creates the participant's key and reads the barrier in the same
// Txn. The first participant ever stores the count, the others check it:
// two top-level Txns for the first, one for the rest, no nested Txn.
func (d *DoubleBarrier) enter(ctx context.Context, h *hold.Hold) (state, error) {
	countKey := d.sp.Single("count")
	first := false
	for {
		spec := hold.Spec{
			If:   []clientv3.Cmp{clientv3.Compare(clientv3.Value(countKey), "=", d.cs)},
			Then: d.readOps(),
			Else: []clientv3.Op{clientv3.OpGet(countKey)},
		}
		if first {
			spec.If = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(countKey), "=", 0)}
			spec.Then = append([]clientv3.Op{clientv3.OpPut(countKey, d.cs)}, spec.Then...)
		}
		created, err := h.Create(ctx, spec)
		switch {
		case err != nil:
			return state{}, err
		case created.Existed:
			st, err := d.read(ctx, h.Key())
			st.rev = created.Rev
			return st, err
		case !created.Failed():
			rs := created.Then
			if first {
				rs = rs[1:]
			}
			return d.parse(created.Rev, rs, h.Key()), nil
		}
		kvs := created.Else[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			first = true
			continue
		}
		if string(kvs[0].Value) != d.cs {
			return state{}, fmt.Errorf("%w: double barrier %q has count %s, not %d", ErrCountMismatch, d.sp.Name(), kvs[0].Value, d.count)
		}
		first = false
	}
}

// awaitFull waits until the round of the participant's key is full and
// returns the round's boundary.
func (d *DoubleBarrier) awaitFull(ctx context.Context, h *hold.Hold, st state) (int64, error) {
	rev := h.Rev()
	var round int64
	// full records a full round (whoever sees it first does it, so a
	// participant that dies right after entering cannot stall the rest) and
	// says whether the caller's round is full.
	full := func(ctx context.Context, st state) (bool, error) {
		for {
			if st.round >= rev {
				round = st.round
				return true, nil
			}
			if !st.own {
				return false, d.lost(ctx)
			}
			if len(st.cur) < d.count {
				return false, nil
			}
			b := st.cur[d.count-1]
			resp, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(d.sp.Single("round")), "=", st.roundMod)).
				Then(clientv3.OpPut(d.sp.Single("round"), strconv.FormatInt(b, 10))).
				Else(d.readOps()...).Commit()
			if err != nil {
				return false, err
			}
			if resp.Succeeded {
				round = b
				return true, nil
			}
			st = d.parse(resp.Header.Revision, resp.Responses, h.Key())
		}
	}
	ok, err := full(ctx, st)
	if err != nil || ok {
		return round, err
	}
	err = d.until(ctx, st.rev, nil, func(ctx context.Context) (bool, int64, error) {
		st, err := d.read(ctx, h.Key())
		if err != nil {
			return false, 0, err
		}
		ok, err := full(ctx, st)
		return ok, st.rev, err
	})
	return round, err
}

// until waits on the barrier's feed until check is done, the session
// ends (its error) or ctx ends.
func (d *DoubleBarrier) until(ctx context.Context, since int64, relevant func(*clientv3.Event) bool, check watch.Check) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-d.s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := d.hub.Until(ctx, d.sp.Base(), keys.RangeEnd(d.sp.Base()), since, relevant, check)
	if serr := d.s.Err(); err != nil && serr != nil {
		return serr
	}
	return err
}

// position is the index of rev in the ascending revs, or len(revs).
func position(revs []int64, rev int64) int {
	for i, r := range revs {
		if r == rev {
			return i
		}
	}
	return len(revs)
}

// Leave removes this participant and blocks until every participant of
// its round has left (or has been removed with its session). It returns
// ErrNotEntered without a prior Enter, and the session's error or ErrLost
// if the participant's key was already gone. If ctx ends while others are
// still inside, the participant has left all the same, and calling Leave
// again resumes waiting for the others.
func (d *DoubleBarrier) Leave(ctx context.Context) error {
	if d.err != nil {
		return d.err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.round == 0 {
		return fmt.Errorf("double barrier %q: %w", d.sp.Name(), ErrNotEntered)
	}
	p := d.sp.Part("p")
	// Anyone still inside from this round: keys created no later than the
	// round's last participant.
	inside := clientv3.OpGet(p, clientv3.WithRange(keys.RangeEnd(p)), clientv3.WithKeysOnly(),
		clientv3.WithMaxCreateRev(d.round), clientv3.WithLimit(1))
	var rev int64
	if d.h != nil {
		rs, err := d.h.Release(ctx, inside)
		if err != nil && !errors.Is(err, ErrLost) {
			return fmt.Errorf("double barrier %q: leave: %w", d.sp.Name(), err)
		}
		d.h = nil
		if err != nil {
			d.round = 0
			return fmt.Errorf("double barrier %q: leave: %w", d.sp.Name(), d.lostFrom(err))
		}
		if len(rs) == 0 || len(rs[0].GetResponseRange().Kvs) == 0 {
			d.round = 0
			return nil
		}
	}
	err := d.until(ctx, rev, func(ev *clientv3.Event) bool { return ev.Type == clientv3.EventTypeDelete }, func(ctx context.Context) (bool, int64, error) {
		resp, err := d.cli.Txn(ctx).Then(inside).Commit()
		if err != nil {
			return false, 0, err
		}
		return len(resp.Responses[0].GetResponseRange().Kvs) == 0, resp.Header.Revision, nil
	})
	if err != nil {
		return fmt.Errorf("double barrier %q: leave: %w", d.sp.Name(), err)
	}
	d.round = 0
	return nil
}

// lost explains a participant key found missing: the session's end (which
// the session itself may not have noticed yet) or ErrLost.
func (d *DoubleBarrier) lost(ctx context.Context) error {
	d.s.Verify(ctx)
	if err := d.s.Err(); err != nil {
		return err
	}
	return ErrLost
}

// lostFrom turns the lifecycle's loss error into what Leave documents:
// the session's error when the session ended, else ErrLost.
func (d *DoubleBarrier) lostFrom(err error) error {
	if serr := d.s.Err(); serr != nil {
		return serr
	}
	if errors.Is(err, lease.ErrExpired) {
		return err
	}
	return ErrLost
}
