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

// Observe returns a channel that receives the election's current leader
// first, then every change in order: a new leader, a new value proclaimed
// by the leader, and the zero Leader (Token 0) when no one leads. It
// sends a state only when it differs from the one sent before.
//
// It follows the process's shared mirror of the election's candidates,
// which keeps every candidate in memory and applies etcd's events one
// revision at a time: so the sequence is exact while the watch lasts, and
// after a compaction, a reconnect or a member failover the mirror reloads
// and Observe goes on from the present, which may skip states it could
// not see but never reports one that is not true. States are queued for
// a slow receiver, never dropped.
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
	go observe(ctx, e.hub, e.sp, ch, e.s.Logger())
	return ch
}

// leaderIn is the leader in a mirror of the election: the oldest
// candidate.
func leaderIn(v *watch.View) Leader {
	if f := v.Line("c").First(); f != nil {
		return leaderOf(f.Value, f.CreateRev)
	}
	return Leader{}
}

// leaderOf reads a candidate key's value: a coord record, or, for a key
// not written by coord, the raw value.
func leaderOf(val []byte, rev int64) Leader {
	if rec, err := keys.DecodeRecord(val); err == nil {
		return Leader{Value: rec.Value, Token: rev}
	}
	return Leader{Value: string(val), Token: rev}
}

// readLeader reads the candidates once and returns the oldest.
func readLeader(ctx context.Context, cli *clientv3.Client, sp keys.Space) (Leader, error) {
	c := sp.Part("c")
	resp, err := cli.Get(ctx, c, clientv3.WithRange(keys.RangeEnd(c)))
	if err != nil {
		return Leader{}, fmt.Errorf("election %q: %w", sp.Name(), etcderr.Explain(cli, err))
	}
	var best Leader
	for _, kv := range resp.Kvs {
		if best.Token == 0 || kv.CreateRevision < best.Token {
			best = leaderOf(kv.Value, kv.CreateRevision)
		}
	}
	if best.Token == 0 {
		return Leader{}, fmt.Errorf("election %q: %w", sp.Name(), ErrNoLeader)
	}
	return best, nil
}

// observe sends the leader of sp's mirror to out, every change, until ctx
// ends or the mirror fails for good.
func observe(ctx context.Context, hub *watch.Hub, sp keys.Space, out chan<- Leader, logger *slog.Logger) {
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
		q.push(leaderIn(v))
	})
	defer stop()
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
