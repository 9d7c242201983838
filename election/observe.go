package election

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observer follows an election without taking part: no session, no
// lease, nothing written (but for RequestTransfer and SetRule), so it
// works for a user who may only read coord's root, and for dashboards and
// tools like `coord leader`. It is safe for concurrent use.
type Observer struct {
	cli    *clientv3.Client
	hub    *watch.Hub
	sp     keys.Space
	logger *slog.Logger
	err    error
}

// NewObserver returns an Observer of the election called name through
// cli, under the root prefix of WithPrefix (default "coord/"). Of the
// options, WithPrefix and WithLogger apply. A nil client or a bad name or
// root is reported, wrapping ErrInvalid, by every method.
func NewObserver(cli *clientv3.Client, name string, opts ...Option) *Observer {
	o := options{root: keys.DefaultRoot, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	ob := &Observer{cli: cli, logger: o.logger}
	if cli == nil {
		ob.err = fmt.Errorf("%w: nil etcd client", ErrInvalid)
		return ob
	}
	root, err := keys.NormalizeRoot(o.root)
	if err == nil {
		ob.sp, err = keys.New(root, kind, name)
	}
	if err != nil {
		ob.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return ob
	}
	ob.hub = watch.For(cli)
	return ob
}

// Leader returns the current leader, or ErrNoLeader. One read.
func (o *Observer) Leader(ctx context.Context) (Leader, error) {
	if o.err != nil {
		return Leader{}, o.err
	}
	return readLeader(ctx, o.cli, o.sp)
}

// Candidates lists every candidate, in the order the election's rule
// would elect them: the leader first, then the others, observers last.
// One read.
func (o *Observer) Candidates(ctx context.Context) ([]Candidate, error) {
	if o.err != nil {
		return nil, o.err
	}
	_, cs, err := readElection(ctx, o.cli, o.sp)
	return cs, err
}

// Observe is Election.Observe, without a session.
func (o *Observer) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	if o.err != nil {
		close(ch)
		return ch
	}
	go observe(ctx, o.hub, o.sp, ch, o.logger, nil)
	return ch
}

// RequestTransfer asks the leader to hand the leadership to the candidate
// to (an ID, or a unique Value): the leader's Asked closes, and Run stops
// its work and transfers. It returns ErrNoLeader when no one leads and
// ErrNoCandidate when to is not a candidate that could lead. A request
// whose target leaves first is dropped, and the rule picks the next
// leader as usual.
func (o *Observer) RequestTransfer(ctx context.Context, to string) error {
	if o.err != nil {
		return o.err
	}
	return requestTransfer(ctx, o.cli, o.hub, o.sp, to)
}

// SetRule is Election.SetRule, without a session.
func (o *Observer) SetRule(ctx context.Context, r Rule) error {
	if o.err != nil {
		return o.err
	}
	return setRule(ctx, o.cli, o.sp, r)
}

// Candidates lists every candidate of the election (see
// Observer.Candidates).
func (e *Election) Candidates(ctx context.Context) ([]Candidate, error) {
	if e.err != nil {
		return nil, e.err
	}
	_, cs, err := readElection(ctx, e.s.Client(), e.sp)
	return cs, err
}

// RequestTransfer asks the leader to hand over to to (see
// Observer.RequestTransfer).
func (e *Election) RequestTransfer(ctx context.Context, to string) error {
	if e.err != nil {
		return e.err
	}
	return requestTransfer(ctx, e.s.Client(), e.hub, e.sp, to)
}

func requestTransfer(ctx context.Context, cli *clientv3.Client, hub *watch.Hub, sp keys.Space, to string) error {
	m := hub.Mirror(sp.Base())
	defer m.Release()
	var target *watch.Entry
	var leaderMod int64
	var ferr error
	// The mirror must not be behind the caller (a candidate it has just
	// seen join elsewhere): a progress notification makes it current. If
	// it is still stale, the Txn's compares fail and say so.
	if err := m.Current(ctx); err != nil {
		return fmt.Errorf("election %q: %w", sp.Name(), etcderr.Explain(cli, err))
	}
	err := m.Read(ctx, 0, func(v *watch.View) {
		_, holder := leaderIn(v, sp)
		if holder == nil {
			ferr = fmt.Errorf("election %q: %w", sp.Name(), ErrNoLeader)
			return
		}
		leaderMod = v.Get(sp.Single("leader")).ModRev
		target, ferr = findCandidate(v, sp, to, holder.Key)
	})
	if err != nil {
		return fmt.Errorf("election %q: %w", sp.Name(), err)
	}
	if ferr != nil {
		return ferr
	}
	// Fenced on the leadership it was asked of: a request for a term that
	// has ended is not made.
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(sp.Single("leader")), "=", leaderMod),
			clientv3.Compare(clientv3.CreateRevision(target.Key), "=", target.CreateRev)).
		Then(clientv3.OpPut(sp.Single("transfer"), target.Key)).Commit()
	if err != nil {
		return fmt.Errorf("election %q: request transfer: %w", sp.Name(), etcderr.Explain(cli, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("election %q: %w: the leadership or %s changed meanwhile", sp.Name(), ErrNoCandidate, to)
	}
	return nil
}

// Observe returns a channel that receives the election's current leader
// first, then every change in order: a new leader, a new value proclaimed
// by the leader, and the zero Leader (Token 0) when no one leads. It
// sends a state only when it differs from the one sent before.
//
// It follows the process's shared mirror of the election, which keeps
// its keys in memory and applies etcd's events one revision at a time:
// so the sequence is exact while the watch lasts, and after a compaction,
// a reconnect or a member failover the mirror reloads and Observe goes on
// from the present, which may skip states it could not see but never
// reports one that is not true. States are queued for a slow receiver,
// never dropped.
//
// The channel closes when ctx ends, or earlier only when etcd refuses to
// let the client read the election (a missing permission) or the client
// is closed; that cause is logged at error level. An Election made with
// a nil session or bad name has nothing to observe: its channel is closed
// at once.
func (e *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	if e.err != nil {
		close(ch)
		return ch
	}
	go observe(ctx, e.hub, e.sp, ch, e.s.Logger(), nil)
	return ch
}

// observe sends the leader of sp's mirror to out, every change, until ctx
// ends or the mirror fails for good.
//
// When started is not nil, it is closed once the first state is taken
// (or observing failed): the caller knows every change from then on will
// be seen.
func observe(ctx context.Context, hub *watch.Hub, sp keys.Space, out chan<- Leader, logger *slog.Logger, started chan<- struct{}) {
	defer close(out)
	m := hub.Mirror(sp.Base())
	defer m.Release()
	var q stateQueue
	q.init()
	stop := m.Listen(func(v *watch.View, c watch.Change) {
		if c.Err != nil {
			q.fail(c.Err)
			return
		}
		l, _ := leaderIn(v, sp)
		q.push(l)
	})
	defer stop()
	if started != nil {
		m.Read(ctx, 0, func(*watch.View) {}) // loaded: the first state is queued
		close(started)
	}
	for {
		l, err := q.pop(ctx)
		if err != nil {
			if ctx.Err() == nil {
				logger.Error("coord election: observing stopped", "kind", kind, "name", sp.Name(), "error", err)
			}
			return
		}
		select {
		case out <- l:
		case <-ctx.Done():
			return
		}
	}
}

// stateQueue holds the states a listener saw and the receiver has not
// taken yet, without the repeats.
type stateQueue struct {
	mu     sync.Mutex
	states []Leader
	last   Leader
	pushed bool
	err    error
	signal chan struct{}
}

func (q *stateQueue) init() { q.signal = make(chan struct{}, 1) }

func (q *stateQueue) push(l Leader) {
	q.mu.Lock()
	if q.pushed && q.last == l {
		q.mu.Unlock()
		return
	}
	q.pushed, q.last = true, l
	q.states = append(q.states, l)
	q.mu.Unlock()
	q.wake()
}

func (q *stateQueue) fail(err error) {
	q.mu.Lock()
	q.err = err
	q.mu.Unlock()
	q.wake()
}

func (q *stateQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *stateQueue) pop(ctx context.Context) (Leader, error) {
	for {
		q.mu.Lock()
		if len(q.states) > 0 {
			l := q.states[0]
			q.states = q.states[1:]
			q.mu.Unlock()
			return l, nil
		}
		err := q.err
		q.mu.Unlock()
		if err != nil {
			return Leader{}, err
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return Leader{}, ctx.Err()
		}
	}
}
