package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotLeader is returned by Proclaim when this Election does not hold
// the leadership: it never won, it resigned, or the leadership was lost.
var ErrNotLeader = errors.New("election: not leader")

// ErrNoLeader is returned by Leader when no candidate holds the election.
var ErrNoLeader = errors.New("election: no leader")

// ErrCampaigning is returned by Campaign when another Campaign on the same
// Election is still in flight. Use one Election per concurrent candidate.
var ErrCampaigning = errors.New("election: campaign already in progress")

// ErrKeyDeleted is returned by Campaign when the candidate's key was
// deleted by someone else (an operator, a tool) while it waited.
var ErrKeyDeleted = errors.New("election: candidate key deleted")

// ErrInvalid is wrapped by the errors every method returns for an Election
// made with a nil session or a bad name (empty, over 512 bytes, invalid
// UTF-8), and by Run for bad arguments.
var ErrInvalid = errors.New("election: invalid argument")

// errResigned is the NotHeld sentinel of the lifecycle: never returned,
// since Resign without leadership does nothing.
var errResigned = errors.New("election: resigned")

// cleanupTimeout bounds Run's Resign when its context has ended, so a
// successor takes over in one round trip without Run hanging on a dead
// connection.
const cleanupTimeout = 5 * time.Second

// kind is the metrics and key kind of this package.
const kind = keys.KindElection

// Leader is who holds an election: the value it proclaimed and its
// fencing token (the create revision of its key). The zero Leader, with
// Token 0, means there is no leader; Observe sends it when that happens.
type Leader struct {
	Value string
	Token int64
}

// Election is one candidate in the election called name. It campaigns
// with a key on its session's lease, so its candidacy and leadership end
// with the session. An Election is safe for concurrent use, but runs one
// Campaign at a time.
type Election struct {
	s    *lease.Session
	hub  *watch.Hub
	name string
	sp   keys.Space
	err  error         // why the Election cannot be used, or nil
	idle chan struct{} // closed: the Done of an Election that does not lead
	cfg  hold.Config

	mu          sync.Mutex
	campaigning bool
	cur         *hold.Hold // the leadership held (or lost), or nil
}

// New returns a candidate for the election called name on session s.
// It talks to etcd only when used. A nil session or an invalid name is
// reported, wrapping ErrInvalid, by every method that can fail.
func New(s *session.Session, name string) *Election {
	e := &Election{name: name, idle: make(chan struct{})}
	close(e.idle)
	if s == nil {
		e.err = fmt.Errorf("%w: nil session", ErrInvalid)
		return e
	}
	e.s = lease.Of(s)
	sp, err := keys.New(e.s.Root(), kind, name)
	if err != nil {
		e.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return e
	}
	e.sp = sp
	e.hub = watch.For(e.s.Client())
	e.cfg = hold.Config{
		Kind: kind, Names: []string{name}, Label: fmt.Sprintf("election %q", name), Noun: "leadership",
		Errors: hold.Errors{Lost: ErrNotLeader, NotHeld: errResigned},
		OnGrant: func(h *hold.Hold) {
			e.s.Metrics().Leader(name, true)
			e.s.Logger().Info("coord leadership gained", "kind", kind, "name", name, "token", h.Rev(), "lease", e.s.LeaseHex())
		},
		OnEnd: func(*hold.Hold, bool) { e.s.Metrics().Leader(name, false) },
	}
	return e
}

// leading returns the leadership held and not lost, or nil.
func (e *Election) leading() *hold.Hold {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cur != nil && e.cur.Held() {
		return e.cur
	}
	return nil
}

// Proclaim sets a new value for the leadership this Election holds,
// without a new election. It is fenced on the leader key's create
// revision, so it is safe to retry; it returns ErrNotLeader when this
// Election does not lead.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	if e.err != nil {
		return e.err
	}
	h := e.leading()
	if h == nil {
		if e.cur != nil {
			if err := e.cur.Lost(); err != nil {
				return err
			}
		}
		return fmt.Errorf("election %q: %w", e.name, ErrNotLeader)
	}
	rec := h.Record()
	rec.Value = value
	resp, err := e.s.Client().Txn(ctx).
		If(h.IsOwner()...).
		Then(clientv3.OpPut(h.Key(), rec.Encode(), clientv3.WithLease(e.s.Lease()))).
		Commit()
	switch {
	case err != nil && e.s.Err() != nil:
		return fmt.Errorf("election %q: %w: %w", e.name, ErrNotLeader, e.s.Err())
	case err != nil:
		return fmt.Errorf("election %q: proclaim: %w", e.name, etcderr.Explain(e.s.Client(), err))
	case !resp.Succeeded:
		return fmt.Errorf("election %q: %w: key %s is gone", e.name, ErrNotLeader, h.Key())
	}
	return nil
}

// Resign gives up the leadership, so the next candidate leads at once,
// and closes Done. It is one request, safe to retry. If the request
// fails, Resign returns the error and this Election still counts itself
// leader, since it may well be. After a loss it only forgets the lost
// leadership, without a request. Without leadership Resign does nothing
// and returns nil; to abandon a Campaign still waiting, cancel its ctx.
// A clean Resign is never reported as a lost leadership.
func (e *Election) Resign(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	e.mu.Lock()
	h := e.cur
	e.mu.Unlock()
	if h == nil {
		return nil
	}
	if _, err := h.Release(ctx); err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, errResigned) {
		return err
	}
	e.mu.Lock()
	if e.cur == h {
		e.cur = nil
	}
	e.mu.Unlock()
	return nil
}

// Leader returns the current leader of the election, as any reader sees
// it, or ErrNoLeader. It is one read of the candidates (their number is
// the number of replicas campaigning).
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	if e.err != nil {
		return Leader{}, e.err
	}
	return readLeader(ctx, e.s.Client(), e.sp)
}

// Done returns a channel that is closed when the leadership won by the
// last successful Campaign is lost: the session ended, the key was
// deleted, or Resign was called. Without leadership it returns a closed
// channel, so call it after Campaign returns.
func (e *Election) Done() <-chan struct{} {
	e.mu.Lock()
	h := e.cur
	e.mu.Unlock()
	if h != nil {
		return h.Done()
	}
	return e.idle
}

// Token returns the fencing token of the leadership this Election holds:
// the create revision of its key, strictly increasing across the
// successive leaders of one election. It is 0 when it does not lead: before
// the first Campaign, after Resign, and after the leadership was lost.
func (e *Election) Token() int64 {
	if h := e.leading(); h != nil {
		return h.Rev()
	}
	return 0
}

// IsOwner returns a comparison that holds only while this Election's
// leader key exists, for guarding your own Txns with the leadership.
// Without leadership it returns a comparison that never holds.
func (e *Election) IsOwner() clientv3.Cmp {
	if h := e.leading(); h != nil {
		return h.IsOwner()[0]
	}
	// No key has a negative create revision.
	return clientv3.Compare(clientv3.CreateRevision(e.sp.Part("c")), "=", -1)
}
