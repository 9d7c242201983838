package barrier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DoubleBarrier lets count participants start together (Enter returns
// when count have entered) and finish together (Leave returns when all of
// them have left). It is reusable: the next round starts once the previous
// one has left. One DoubleBarrier value is one participant.
//
// Keys, under <root>dbarrier/<name>/: "count" stores the count; each
// participant has a key under "p/" on its session's lease; "round" holds
// the create revision of the last participant of the last full round. A
// participant belongs to that round if its key is no newer than it, and to
// the round now filling otherwise, so a straggler of one round is never
// counted in the next.
type DoubleBarrier struct {
	s     *session.Session
	cli   *clientv3.Client
	sp    keys.Space
	count int
	cs    string
	err   error

	mu      sync.Mutex
	key     string // own participant key while entered
	rev     int64  // its create revision
	round   int64  // the round's boundary while entered or leaving, else 0
	entered time.Time
}

// NewDouble returns participant of the double barrier called name, for
// rounds of count participants, with its key on s's lease. It does not
// talk to etcd; a nil session, a bad name or a count under 1 is reported,
// wrapped in ErrInvalid, by Enter and Leave.
func NewDouble(s *session.Session, name string, count int) *DoubleBarrier {
	if s == nil {
		return &DoubleBarrier{err: fmt.Errorf("%w: nil session", ErrInvalid)}
	}
	sp, err := keys.New(s.Prefix(), keys.KindDouble, name)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %w", ErrInvalid, err)
	case count < 1:
		err = fmt.Errorf("%w: double barrier %q: count %d is under 1", ErrInvalid, name, count)
	}
	return &DoubleBarrier{s: s, cli: s.Client(), sp: sp, count: count, cs: strconv.Itoa(count), err: err}
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

// Enter adds this participant to the round now filling and blocks until
// the round has count participants. It returns ErrFull, leaving nothing
// behind, when the round is already full or the previous round is still
// leaving; ErrEntered if called twice; the session's error if the session
// ends; ctx's error if ctx ends, after deleting the participant's key. An
// Enter cancelled at the very moment its round fills may already have been
// counted; the others then see it as a participant that entered and left
// at once, and their Leave does not wait for it.
func (d *DoubleBarrier) Enter(ctx context.Context) error {
	if d.err != nil {
		return d.err
	}
	if err := d.s.Err(); err != nil {
		return fmt.Errorf("double barrier %q: enter: %w", d.sp.Name(), err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.key != "" || d.round != 0 {
		return fmt.Errorf("double barrier %q: %w", d.sp.Name(), ErrEntered)
	}
	start := time.Now()
	key := d.sp.Key("p", d.s.NextID())
	countKey := d.sp.Single("count")
	enter := append([]clientv3.Op{d.s.PutOwn(key, "")}, d.readOps()...)
	// The first participant ever stores the count; the others check it.
	// Either way the key is created and the state read in the same Txn.
	resp, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(countKey), "=", 0)).
		Then(append([]clientv3.Op{clientv3.OpPut(countKey, d.cs)}, enter...)...).
		Else(clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(countKey), "=", d.cs)},
			enter, []clientv3.Op{clientv3.OpGet(countKey)})).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			err = fmt.Errorf("%w: %w", session.ErrExpired, err)
		}
		return fmt.Errorf("double barrier %q: enter: %w", d.sp.Name(), err)
	}
	rs := resp.Responses
	if resp.Succeeded {
		rs = rs[1:]
	} else {
		inner := resp.Responses[0].GetResponseTxn()
		if !inner.Succeeded {
			kvs := inner.Responses[0].GetResponseRange().Kvs
			return fmt.Errorf("%w: double barrier %q has count %s, not %d", ErrCountMismatch, d.sp.Name(), kvs[0].Value, d.count)
		}
		rs = inner.Responses
	}
	rev := resp.Header.Revision
	st := d.parse(rev, rs[1:], key)

	if st.old > 0 || position(st.cur, rev) >= d.count {
		d.remove(ctx, key, rev)
		why := "round full"
		if st.old > 0 {
			why = fmt.Sprintf("%d participants of the previous round have not left", st.old)
		}
		return fmt.Errorf("double barrier %q: %w (%s)", d.sp.Name(), ErrFull, why)
	}
	round, err := d.awaitFull(ctx, key, rev, st)
	if err != nil {
		d.remove(ctx, key, rev)
		return fmt.Errorf("double barrier %q: enter: %w", d.sp.Name(), err)
	}
	d.key, d.rev, d.round, d.entered = key, rev, round, time.Now()
	d.s.Metrics().Acquired(keys.KindDouble, d.sp.Name(), time.Since(start))
	d.s.Logger().Debug("coord double barrier entered", "barrier", d.sp.Name(), "round", round)
	return nil
}

// awaitFull waits until the round of the key created at rev is full and
// returns the round's boundary.
func (d *DoubleBarrier) awaitFull(ctx context.Context, key string, rev int64, st state) (int64, error) {
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
			st = d.parse(resp.Header.Revision, resp.Responses, key)
		}
	}
	ok, err := full(ctx, st)
	if err != nil || ok {
		return round, err
	}
	d.s.Metrics().Waiting(keys.KindDouble, d.sp.Name(), 1)
	defer d.s.Metrics().Waiting(keys.KindDouble, d.sp.Name(), -1)
	r := []wait.Range{{Key: d.sp.Base(), End: keys.RangeEnd(d.sp.Base())}}
	err = wait.Until(ctx, d.cli, st.rev, r, func(ctx context.Context) (bool, int64, error) {
		resp, err := d.cli.Txn(ctx).Then(d.readOps()...).Commit()
		if err != nil {
			return false, 0, err
		}
		st := d.parse(resp.Header.Revision, resp.Responses, key)
		ok, err := full(ctx, st)
		return ok, st.rev, err
	}, d.s)
	return round, err
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

// remove deletes the caller's key after a failed or cancelled Enter, even
// when ctx is done. The key is unique to this Enter (Session.NextID), so
// Session.Retire's unconditional delete is as safe as a fenced one, and it
// keeps trying in the background if etcd is unreachable right now.
func (d *DoubleBarrier) remove(ctx context.Context, key string, _ int64) {
	d.s.Retire(ctx, key)
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
	if d.key != "" {
		resp, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(d.key), "=", d.rev)).
			Then(clientv3.OpDelete(d.key), inside).Commit()
		if err != nil {
			return fmt.Errorf("double barrier %q: leave: %w", d.sp.Name(), err)
		}
		held := time.Since(d.entered)
		d.key = ""
		if !resp.Succeeded {
			d.round = 0
			d.s.Metrics().Released(keys.KindDouble, d.sp.Name(), held, true)
			return fmt.Errorf("double barrier %q: leave: %w", d.sp.Name(), d.lost(ctx))
		}
		d.s.Metrics().Released(keys.KindDouble, d.sp.Name(), held, false)
		if len(resp.Responses[1].GetResponseRange().Kvs) == 0 {
			d.round = 0
			return nil
		}
		rev = resp.Header.Revision
	}
	d.s.Metrics().Waiting(keys.KindDouble, d.sp.Name(), 1)
	defer d.s.Metrics().Waiting(keys.KindDouble, d.sp.Name(), -1)
	r := []wait.Range{{Key: p, End: keys.RangeEnd(p), DeletesOnly: true}}
	err := wait.Until(ctx, d.cli, rev, r, func(ctx context.Context) (bool, int64, error) {
		resp, err := d.cli.Txn(ctx).Then(inside).Commit()
		if err != nil {
			return false, 0, err
		}
		return len(resp.Responses[0].GetResponseRange().Kvs) == 0, resp.Header.Revision, nil
	}, d.s)
	if err != nil {
		return fmt.Errorf("double barrier %q: leave: %w", d.sp.Name(), err)
	}
	d.round = 0
	return nil
}

// lost explains a participant key found missing: the session's end (which
// the session itself may not have noticed yet) or ErrLost.
func (d *DoubleBarrier) lost(ctx context.Context) error {
	if err := d.s.Err(); err != nil {
		return err
	}
	if resp, err := d.cli.TimeToLive(ctx, d.s.Lease()); err == nil && resp.TTL < 0 {
		return fmt.Errorf("%w: lease %x is gone", session.ErrExpired, int64(d.s.Lease()))
	}
	return ErrLost
}
