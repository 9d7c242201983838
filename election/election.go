package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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
	s      *session.Session
	cli    *clientv3.Client
	name   string
	prefix string        // every candidate key starts with it
	err    error         // why the Election cannot be used, or nil
	idle   chan struct{} // closed: the Done of an Election that does not lead

	mu          sync.Mutex
	campaigning bool
	cur         *term // the leadership held, or nil
}

// term is one leadership: from Campaign's success to Resign or loss.
type term struct {
	key      string
	rev      int64
	hold     *wait.Hold
	start    time.Time
	resigned bool // guarded by Election.mu
}

// New returns a candidate for the election called name on session s.
// It talks to etcd only when used. A nil session or an invalid name is
// reported, wrapping ErrInvalid, by every method that can fail.
func New(s *session.Session, name string) *Election {
	e := &Election{s: s, name: name, idle: make(chan struct{})}
	close(e.idle)
	if s == nil {
		e.err = fmt.Errorf("%w: nil session", ErrInvalid)
		return e
	}
	sp, err := keys.New(s.Prefix(), kind, name)
	if err != nil {
		e.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return e
	}
	e.cli = s.Client()
	e.prefix = sp.Part("c")
	return e
}

// Proclaim sets a new value for the leadership this Election holds,
// without a new election. It is fenced on the leader key's create
// revision, so it is safe to retry; it returns ErrNotLeader when this
// Election does not lead.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	if e.err != nil {
		return e.err
	}
	t := e.term()
	if t == nil {
		return fmt.Errorf("election %q: %w", e.name, ErrNotLeader)
	}
	if err := t.hold.Err(); err != nil {
		return fmt.Errorf("election %q: %w: %w", e.name, ErrNotLeader, err)
	}
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
		Then(clientv3.OpPut(t.key, value, clientv3.WithLease(e.s.Lease()))).
		Commit()
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		return fmt.Errorf("election %q: %w: %w", e.name, ErrNotLeader, e.sessionErr())
	case err != nil:
		return fmt.Errorf("election %q: proclaim: %w", e.name, err)
	case !resp.Succeeded:
		return fmt.Errorf("election %q: %w: key %s is gone", e.name, ErrNotLeader, t.key)
	}
	return nil
}

// Resign gives up the leadership, so the next candidate leads at once,
// and closes Done. It is one Txn fenced on the leader key's create
// revision, safe to retry. If the request fails, Resign returns the error
// and this Election still counts itself leader, since it may well be.
// After a loss it only forgets the lost leadership, without a request.
// Without leadership Resign does nothing and returns nil; to abandon a
// Campaign still waiting, cancel its ctx.
func (e *Election) Resign(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	t := e.term()
	if t == nil {
		return nil
	}
	// A lost leadership has nothing to delete: its key is gone, or goes
	// with a lease the session is revoking, and the client may be cut
	// off, which would only make the caller wait.
	if t.hold.Err() == nil {
		_, err := e.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)).
			Then(clientv3.OpDelete(t.key)).
			Commit()
		if err != nil {
			return fmt.Errorf("election %q: resign: %w", e.name, err)
		}
	}
	e.mu.Lock()
	wasLeading := !t.resigned
	t.resigned = true
	if e.cur == t {
		e.cur = nil
	}
	e.mu.Unlock()
	t.hold.Release(fmt.Errorf("election %q: resigned", e.name))
	if wasLeading {
		e.s.Metrics().Leader(e.name, false)
		e.s.Metrics().Released(kind, e.name, time.Since(t.start), false)
		e.s.Logger().Debug("coord leadership resigned", "election", e.name, "token", t.rev)
	}
	return nil
}

func (e *Election) term() *term {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur
}

// Leader returns the current leader of the election, as any reader sees
// it, or ErrNoLeader.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	if e.err != nil {
		return Leader{}, e.err
	}
	// The prefix ends in '/', so WithPrefix covers exactly this name.
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, fmt.Errorf("election %q: %w", e.name, err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, fmt.Errorf("election %q: %w", e.name, ErrNoLeader)
	}
	return Leader{Value: string(resp.Kvs[0].Value), Token: resp.Kvs[0].CreateRevision}, nil
}

// Done returns a channel that is closed when the leadership won by the
// last successful Campaign is lost: the session ended, the key was
// deleted, or Resign was called. Without leadership it returns a closed
// channel, so call it after Campaign returns.
func (e *Election) Done() <-chan struct{} {
	if t := e.term(); t != nil {
		return t.hold.Done()
	}
	return e.idle
}

// Token returns the fencing token of the leadership won by the last
// successful Campaign: the create revision of its key, strictly
// increasing across the successive leaders of one election. It stays
// after a loss, so writes fenced on it are refused; it is 0 before the
// first Campaign and after Resign.
func (e *Election) Token() int64 {
	if t := e.term(); t != nil {
		return t.rev
	}
	return 0
}

// IsOwner returns a comparison that holds only while this Election's
// leader key exists, for guarding your own Txns with the leadership.
// Without leadership it returns a comparison that never holds.
func (e *Election) IsOwner() clientv3.Cmp {
	if t := e.term(); t != nil {
		return clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev)
	}
	// No key has a negative create revision.
	return clientv3.Compare(clientv3.CreateRevision(e.prefix), "=", -1)
}
