package semaphore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// capValue is the capacity key's value, readable in etcdctl:
//
//	"4"          stored by the first user, made with capacity 4
//	"6 set"      stored by SetCapacity(6)
//	"2 set 1234" stored by SetCapacity(2) while the requests up to
//	             revision 1234 held permits: they keep them, even where
//	             the FIFO rule under the new capacity would not grant them
type capValue struct {
	n           int64
	set         bool
	heldThrough int64
}

func parseCap(v []byte) (capValue, error) {
	f := strings.Fields(string(v))
	var c capValue
	var err error
	if len(f) == 0 || len(f) > 3 || (len(f) > 1 && f[1] != "set") {
		return c, fmt.Errorf("stored capacity %q is malformed", v)
	}
	if c.n, err = strconv.ParseInt(f[0], 10, 64); err != nil || c.n < 1 {
		return c, fmt.Errorf("stored capacity %q is not a positive number", v)
	}
	c.set = len(f) > 1
	if len(f) == 3 {
		if c.heldThrough, err = strconv.ParseInt(f[2], 10, 64); err != nil {
			return c, fmt.Errorf("stored capacity %q is malformed", v)
		}
	}
	return c, nil
}

func (c capValue) String() string {
	switch {
	case !c.set:
		return strconv.FormatInt(c.n, 10)
	case c.heldThrough > 0:
		return fmt.Sprintf("%d set %d", c.n, c.heldThrough)
	default:
		return fmt.Sprintf("%d set", c.n)
	}
}

// holds is the one grant rule, used by waiters and by State alike: a
// request holds when it was granted before the last capacity change
// (rev <= heldThrough), or when it and every request before it fit
// (ahead + n <= capacity).
func (c capValue) holds(rev, ahead, n int64) bool {
	return rev <= c.heldThrough || ahead+n <= c.n
}

// adopt checks a capacity value read from etcd and makes it this
// Semaphore's belief. A value written by SetCapacity is followed by
// everyone; a first user's value must match our own.
func (s *Semaphore) adopt(v []byte) (capValue, error) {
	c, err := parseCap(v)
	if err != nil {
		return c, err
	}
	if !c.set && c.n != s.ctor {
		return c, fmt.Errorf("%w: stored capacity is %d, this semaphore was made with %d", ErrCapacityMismatch, c.n, s.ctor)
	}
	s.mu.Lock()
	s.stored, s.capacity = string(v), c.n
	s.mu.Unlock()
	return c, nil
}

// maxGuards bounds the per-key compares of SetCapacity's Txn, well under
// etcd's default limit of 128 operations per Txn.
const maxGuards = 100

// SetCapacity changes the capacity for every user of the semaphore. Waiters
// re-evaluate at once: a larger capacity may grant them; a smaller one
// makes those whose request no longer fits at all fail with ErrTooLarge.
// Holders keep what they hold, and State keeps listing them as holders;
// until enough is released, no new request is granted.
//
// It costs one read and one Txn, which checks that no request came or
// went in between (so the holders it records are exactly those the FIFO
// rule granted) and is retried if one did. It returns an error wrapping
// ErrInvalid for n < 1.
func (s *Semaphore) SetCapacity(ctx context.Context, n int64) error {
	if err := s.usable(ctx); err != nil {
		return s.wrap(err)
	}
	if n < 1 {
		return s.wrap(fmt.Errorf("%w: capacity %d, want at least 1", ErrInvalid, n))
	}
	cli := s.s.Client()
	pfx := s.linePfx()
	for attempt := range maxRetries {
		st, snap, err := s.read(ctx, false)
		if err != nil {
			return s.wrap(err)
		}
		next := capValue{n: n, set: true}
		if len(st.Holders) > 0 {
			next.heldThrough = st.Holders[len(st.Holders)-1].Token
		}
		// Only a request granted between the read and the write could be
		// missed from heldThrough: guard against new requests and against
		// departures, which may grant waiters. Under heavy churn, after
		// half the attempts, settle for guarding the capacity alone.
		guards := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(s.capKey()), "=", snap.capMod)}
		if attempt < maxRetries/2 && len(snap.line) <= maxGuards {
			guards = append(guards, clientv3.Compare(clientv3.CreateRevision(pfx), "<", snap.rev+1).WithRange(keys.RangeEnd(pfx)))
			for _, h := range snap.line {
				guards = append(guards, isOwner(h.Key, h.Token))
			}
		}
		resp, err := cli.Txn(ctx).If(guards...).Then(clientv3.OpPut(s.capKey(), next.String())).Commit()
		if err != nil {
			return s.wrap(err)
		}
		if resp.Succeeded {
			s.adopt([]byte(next.String()))
			s.s.Logger().Info("coord semaphore capacity set", "kind", kind, "name", s.name, "capacity", n, "was", st.Capacity)
			return nil
		}
	}
	return s.wrap(fmt.Errorf("set capacity: the semaphore kept changing"))
}
