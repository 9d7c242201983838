package group_test

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
)

func TestJoinMembersLeave(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	r := root(t)
	c := etcdtest.NewCounter()
	cli := etcdtest.NewTestClient(t, srv.Endpoints(), etcdtest.WithCounter(c))
	s := newSession(t, cli, r)
	c.Reset()
	a := join(t, s, "workers", "a", map[string]string{"addr": "10.0.0.1:80"})
	if n := c.Total("Txn", "Range", "Put", "DeleteRange"); n != 1 {
		t.Fatalf("Join cost %d RPCs (%s), want one Txn", n, c)
	}
	b := join(t, newSession(t, srv.Client(), r), "workers", "b/with/slash", nil, group.WithWeight(3))
	v, err := group.New(srv.Client(), "workers", group.WithPrefix(r)).Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(v.Members); got != "a,b/with/slash" {
		t.Fatalf("members %q", got)
	}
	ma, _ := v.Get("a")
	mb, _ := v.Get("b/with/slash")
	if ma.Meta["addr"] != "10.0.0.1:80" || ma.Weight != 1 || mb.Weight != 3 || ma.Token != a.Token() || mb.Token != b.Token() ||
		ma.Lease != s.Lease() || ma.Since.IsZero() || mb.Token <= ma.Token {
		t.Fatalf("members read back as %+v, %+v (tokens %d, %d)", ma, mb, a.Token(), b.Token())
	}
	if m, err := a.Group().Lookup(ctx, "b/with/slash"); err != nil || m.Token != b.Token() {
		t.Fatalf("Lookup: %+v, %v", m, err)
	}
	if _, err := a.Group().Lookup(ctx, "nobody"); !errors.Is(err, group.ErrNotMember) {
		t.Fatalf("Lookup of no member: %v", err)
	}
	c.Reset()
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if n := c.Total("Txn", "Range", "Put", "DeleteRange"); n != 1 {
		t.Fatalf("Leave cost %d RPCs (%s), want one", n, c)
	}
	if !closedWithin(a.Done(), time.Second) || !errors.Is(a.Err(), group.ErrNotMember) || errors.Is(a.Err(), group.ErrLost) {
		t.Fatalf("after Leave: Err %v", a.Err())
	}
	if err := a.Leave(ctx); !errors.Is(err, group.ErrNotMember) {
		t.Fatalf("second Leave: %v", err)
	}
	if err := a.SetMeta(ctx, nil); !errors.Is(err, group.ErrNotMember) {
		t.Fatalf("SetMeta after Leave: %v", err)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if n := keysUnder(t, r); n != 0 {
		t.Fatalf("%d keys left after every member left", n)
	}
}

// Ids are unique among live members, on one session or several; a left
// id can join again, with a larger token.
func TestDuplicateIDsRefused(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	r := root(t)
	s1, s2 := newSession(t, srv.Client(), r), newSession(t, srv.Client(), r)
	a := join(t, s1, "g", "same", map[string]string{"v": "1"})
	for _, s := range []*session.Session{s1, s2} {
		if _, err := group.Join(ctx, s, "g", "same", nil); !errors.Is(err, group.ErrDuplicate) {
			t.Fatalf("duplicate join: %v", err)
		}
	}
	if a.Err() != nil || keysUnder(t, r) != 1 {
		t.Fatalf("a refused duplicate touched the member: %v, %d keys", a.Err(), keysUnder(t, r))
	}
	// Many at once: exactly one wins.
	if err := a.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		s := newSession(t, srv.Client(), r)
		wg.Go(func() {
			m, err := group.Join(ctx, s, "g", "same", nil)
			switch {
			case err == nil:
				won.Add(1)
				if m.Token() <= a.Token() {
					t.Errorf("rejoin token %d not above %d", m.Token(), a.Token())
				}
			case !errors.Is(err, group.ErrDuplicate):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || keysUnder(t, r) != 1 {
		t.Fatalf("%d of 8 concurrent joins of one id won, %d keys", won.Load(), keysUnder(t, r))
	}
}

// WithLimit is exact under concurrency: 12 joins race for 5 places.
func TestLimit(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	r := root(t)
	var won, full atomic.Int32
	var wg sync.WaitGroup
	for i := range 12 {
		s := newSession(t, srv.Client(), r)
		wg.Go(func() {
			_, err := group.Join(ctx, s, "capped", string(rune('a'+i)), nil, group.WithLimit(5))
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, group.ErrFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 5 || full.Load() != 7 || keysUnder(t, r) != 5 {
		t.Fatalf("limit 5: %d joined, %d refused, %d keys", won.Load(), full.Load(), keysUnder(t, r))
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 10*time.Second)
	r := root(t)
	s := newSession(t, srv.Client(), r)
	big := map[string]string{"k": strings.Repeat("x", group.MaxMetaBytes)}
	for name, f := range map[string]func() error{
		"nil session": func() error { _, err := group.Join(ctx, nil, "g", "a", nil); return err },
		"empty name":  func() error { _, err := group.Join(ctx, s, "", "a", nil); return err },
		"empty id":    func() error { _, err := group.Join(ctx, s, "g", "", nil); return err },
		"long id":     func() error { _, err := group.Join(ctx, s, "g", strings.Repeat("i", 513), nil); return err },
		"bad utf8 id": func() error { _, err := group.Join(ctx, s, "g", "\xff", nil); return err },
		"big meta":    func() error { _, err := group.Join(ctx, s, "g", "a", big); return err },
		"zero weight": func() error { _, err := group.Join(ctx, s, "g", "a", nil, group.WithWeight(0)); return err },
		"huge weight": func() error {
			_, err := group.Join(ctx, s, "g", "a", nil, group.WithWeight(group.MaxWeight+1))
			return err
		},
		"neg limit":  func() error { _, err := group.Join(ctx, s, "g", "a", nil, group.WithLimit(-1)); return err },
		"nil client": func() error { _, err := group.New(nil, "g").Members(ctx); return err },
		"bad root": func() error {
			_, err := group.New(srv.Client(), "g", group.WithPrefix("x/lock/")).Members(ctx)
			return err
		},
		"no name read": func() error { _, err := group.New(srv.Client(), "").Members(ctx); return err },
	} {
		if err := f(); !errors.Is(err, group.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, ok := <-group.New(nil, "g").Watch(ctx); ok {
		t.Error("Watch of a bad group sent a view")
	}
	m := join(t, s, "g", "a", nil)
	if err := m.SetMeta(ctx, big); !errors.Is(err, group.ErrInvalid) {
		t.Errorf("SetMeta over the limit: %v", err)
	}
	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := ctxWithCancel(ctx)
	cancel()
	if _, err := group.Join(cctx, s, "g", "b", nil); err == nil {
		t.Error("Join with a cancelled ctx succeeded")
	}
	s.Close()
	if _, err := group.Join(ctx, s, "g", "c", nil); !errors.Is(err, session.ErrClosed) {
		t.Errorf("Join on a closed session: %v", err)
	}
	if n := keysUnder(t, r); n != 0 {
		t.Fatalf("%d keys left behind by refused joins", n)
	}
}

// A membership ends with its session: Done closes and Err says why.
func TestMembershipLostWithSession(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 20*time.Second)
	r := root(t)
	s := newSession(t, srv.Client(), r)
	m := join(t, s, "g", "a", nil)
	if _, err := srv.Client().Revoke(ctx, s.Lease()); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(m.Done(), 5*time.Second) {
		t.Fatal("Done open after the lease was revoked")
	}
	if err := m.Err(); !errors.Is(err, group.ErrLost) || !errors.Is(err, session.ErrExpired) {
		t.Fatalf("Err %v, want ErrLost and session.ErrExpired", err)
	}
	if err := m.Leave(ctx); !errors.Is(err, group.ErrLost) {
		t.Fatalf("Leave after loss: %v", err)
	}
	// Deleted from outside, on a live session.
	s2 := newSession(t, srv.Client(), r)
	m2 := join(t, s2, "g", "b", nil)
	if _, err := srv.Client().Delete(ctx, m2.Key()); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(m2.Done(), 5*time.Second) || !errors.Is(m2.Err(), group.ErrLost) {
		t.Fatalf("deleted membership: %v", m2.Err())
	}
	if err := m2.SetMeta(ctx, map[string]string{"x": "y"}); !errors.Is(err, group.ErrLost) {
		t.Fatalf("SetMeta after loss: %v", err)
	}
	if n := keysUnder(t, r); n != 0 {
		t.Fatalf("SetMeta after loss wrote a key: %d keys", n)
	}
}
