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
	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotLeader is returned by Proclaim and Transfer when this Election
// does not hold the leadership: it never won, it resigned, or the
// leadership was lost.
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
// UTF-8), by Campaign for a priority out of range or metadata over
// MaxMetaBytes, and by Run for bad arguments.
var ErrInvalid = errors.New("election: invalid argument")

// ErrNoCandidate is returned by Transfer and RequestTransfer when the
// target is not a candidate that could lead (unknown, an observer, the
// leader itself), or left before the handover.
var ErrNoCandidate = errors.New("election: no such candidate")

// ErrRuleMismatch is returned by Campaign when the election's stored rule
// differs from the one this Election was made with (WithRule); SetRule
// changes it for everyone.
var ErrRuleMismatch = errors.New("election: rule mismatch")

// errResigned is the NotHeld sentinel of the lifecycle: never returned,
// since Resign without leadership does nothing.
var errResigned = errors.New("election: resigned")

const (
	// cleanupTimeout bounds Run's Resign when its context has ended, so a
	// successor takes over in one round trip without Run hanging on a
	// dead connection.
	cleanupTimeout = 5 * time.Second
	// kind is the metrics and key kind of this package.
	kind = keys.KindElection
	// MaxPriority and MinPriority bound a candidate's priority.
	MaxPriority = 1_000_000
	MinPriority = -MaxPriority
	// MaxMetaBytes bounds a candidate's metadata (keys and values).
	MaxMetaBytes = 1024
)

// Leader is who holds an election: the value it proclaimed and its
// fencing token. The zero Leader, with Token 0, means there is no leader;
// Observe sends it when that happens.
type Leader struct {
	Value string
	Token int64
}

// Election is one candidate in the election called name. It campaigns
// with a key on its session's lease, so its candidacy and leadership end
// with the session. An Election is safe for concurrent use, but runs one
// Campaign at a time.
//
// Keys, under <root>election/<name>/: one candidate key per Campaign
// under "c/" (its record holds the value, priority and metadata);
// "leader", which names the leading candidate's key, on that candidate's
// lease, and whose mod revision is the leadership's fencing token (it is
// written once per term: when a candidate takes a vacant leadership, or
// when a leader hands it over); "rule", the election's rule, when it is
// not FIFO; "transfer", a pending request that the leader hand over.
type Election struct {
	s    *lease.Session
	hub  *watch.Hub
	name string
	sp   keys.Space
	err  error         // why the Election cannot be used, or nil
	idle chan struct{} // closed: the Done of an Election that does not lead
	cfg  hold.Config
	rule *Rule // the rule this Election was made with, or nil to follow the stored one

	mu          sync.Mutex
	campaigning bool
	ruleChecked bool
	cur         *term // the leadership held (or lost), or nil
}

// term is one leadership: from Campaign's success to Resign or loss.
type term struct {
	h     *hold.Hold // the candidacy
	token int64      // the leader key's mod revision
	done  chan struct{}
	asked chan struct{}
	stop  func()

	mu      sync.Mutex
	ended   bool
	leaving bool  // a handover is under way: the leader key's change is ours
	lost    error // why it ended other than by Resign or Transfer
	askedC  bool
	span    *span.Span // the leadership's span, while traced (trace.go)
}

// New returns a candidate for the election called name on session s.
// It talks to etcd only when used. A nil session or an invalid name is
// reported, wrapping ErrInvalid, by every method that can fail. Of the
// options, only WithRule and WithLockDelay apply (the others are Run's).
func New(s *session.Session, name string, opts ...Option) *Election {
	e := &Election{name: name, idle: make(chan struct{})}
	close(e.idle)
	var o options
	for _, opt := range opts {
		opt(&o)
	}
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
	if err := hold.CheckDelay(o.delay); err != nil {
		e.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return e
	}
	e.sp, e.rule = sp, o.rule
	e.hub = watch.For(e.s.Client())
	e.cfg = hold.Config{
		Kind: kind, Names: []string{name}, Label: fmt.Sprintf("election %q", name), Noun: "candidacy",
		Errors: hold.Errors{Lost: ErrNotLeader, NotHeld: errResigned},
		Delay:  o.delay,
	}
	return e
}

func (e *Election) leaderKey() string   { return e.sp.Single("leader") }
func (e *Election) transferKey() string { return e.sp.Single("transfer") }

// leading returns the leadership held and not ended, or nil.
func (e *Election) leading() *term {
	e.mu.Lock()
	t := e.cur
	e.mu.Unlock()
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return nil
	}
	return t
}

// ownsLeadership is the compare that holds while t's term lasts: the
// leader key is rewritten at every change of leader.
func (e *Election) ownsLeadership(t *term) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(e.leaderKey()), "=", t.token)
}

// Proclaim sets a new value for the leadership this Election holds,
// without a new election. It is fenced on the leadership, so it is safe to
// retry; it returns ErrNotLeader when this Election does not lead.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	if e.err != nil {
		return e.err
	}
	t := e.leading()
	if t == nil {
		return e.notLeader()
	}
	rec := t.h.Record()
	rec.Value = value
	resp, err := e.s.Client().Txn(ctx).
		If(append(t.h.IsOwner(), e.ownsLeadership(t))...).
		Then(clientv3.OpPut(t.h.Key(), rec.Encode(), clientv3.WithLease(e.s.Lease()))).
		Commit()
	switch {
	case err != nil && e.s.Err() != nil:
		return fmt.Errorf("election %q: %w: %w", e.name, ErrNotLeader, e.s.Err())
	case err != nil:
		return fmt.Errorf("election %q: proclaim: %w", e.name, etcderr.Explain(e.s.Client(), err))
	case !resp.Succeeded:
		return fmt.Errorf("election %q: %w: the leadership moved on", e.name, ErrNotLeader)
	}
	return nil
}

// notLeader explains ErrNotLeader: the loss, when there was one.
func (e *Election) notLeader() error {
	e.mu.Lock()
	t := e.cur
	e.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		lost := t.lost
		t.mu.Unlock()
		if lost != nil {
			return fmt.Errorf("election %q: %w: %w", e.name, ErrNotLeader, lost)
		}
	}
	return fmt.Errorf("election %q: %w", e.name, ErrNotLeader)
}

// Resign gives up the leadership, handing it in the same Txn to the
// candidate the election's rule picks next (so that candidate leads at
// once, with no moment without a leader), and closes Done. It is one
// request, safe to retry. If the request fails, Resign returns the error
// and this Election still counts itself leader, since it may well be.
// After a loss it only forgets the lost leadership, without a request.
// Without leadership Resign ends this Election's candidacy, if it has
// one, and returns nil; to abandon a Campaign still waiting, cancel its
// ctx. A clean Resign is never reported as a lost leadership.
func (e *Election) Resign(ctx context.Context) error {
	if e.err != nil {
		return e.err
	}
	e.mu.Lock()
	t := e.cur
	e.mu.Unlock()
	if t == nil {
		return nil
	}
	if e.leading() != nil {
		if err := e.handOver(ctx, t, ""); err != nil {
			return err
		}
	} else if _, err := t.h.Release(ctx); err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, errResigned) {
		return err
	}
	e.endTerm(t, nil)
	e.mu.Lock()
	if e.cur == t {
		e.cur = nil
	}
	e.mu.Unlock()
	return nil
}

// Transfer hands the leadership this Election holds to the candidate to
// (a Candidate's ID, or its Value when no ID matches and the value is
// unique), in one Txn: the leader key names the target from that
// revision on, so no other candidate can take the leadership in between,
// and this Election's candidacy ends (its Done closes). Stop the work
// that needs the leadership first (Run does). It returns ErrNotLeader
// without the leadership, and ErrNoCandidate, still leading, when the
// target is unknown, an observer, or gone by the time of the handover.
func (e *Election) Transfer(ctx context.Context, to string) error {
	if e.err != nil {
		return e.err
	}
	t := e.leading()
	if t == nil {
		return e.notLeader()
	}
	if err := e.handOver(ctx, t, to); err != nil {
		return err
	}
	e.endTerm(t, nil)
	e.mu.Lock()
	if e.cur == t {
		e.cur = nil
	}
	e.mu.Unlock()
	return nil
}

// handOver ends t's term in one Txn with the candidacy's release: the
// leader key goes to the named target (to), or to whom the rule picks
// next (to == ""), or is deleted when no candidate is left.
//
// The pick comes from the process's mirror, which may lag: so the Txn
// also checks that the successor is still there and, when the pick could
// be wrong for a candidate the mirror has not seen (under the priority
// rule, or when it found no successor at all), that no candidate joined
// after the mirror's revision. If a check fails while this term still
// leads, it picks again from a fresher mirror.
func (e *Election) handOver(ctx context.Context, t *term, to string) error {
	// From here the leader key's change is this term's own doing, never
	// a loss to report (even if it is seen first in the mirror).
	t.mu.Lock()
	t.leaving = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.leaving = false
		t.mu.Unlock()
	}()
	m := e.hub.Mirror(e.sp.Base())
	defer m.Release()
	c := e.sp.Part("c")
	since := int64(0)
	current := false
	for attempt := 0; ; attempt++ {
		var next *watch.Entry
		var rerr error
		var rule Rule
		var mirrorRev int64
		if err := m.Sync(ctx, since); err != nil {
			return fmt.Errorf("election %q: %w", e.name, err)
		}
		err := m.Read(ctx, 0, func(v *watch.View) {
			mirrorRev, rule = v.Rev(), ruleIn(v, e.sp)
			if to != "" {
				next, rerr = findCandidate(v, e.sp, to, t.h.Key())
				return
			}
			next = electNext(v, e.sp, rule, t.h.Key())
		})
		if err != nil {
			return fmt.Errorf("election %q: %w", e.name, err)
		}
		if rerr != nil && !current {
			// The target may be a candidate the caller has seen and this
			// process's mirror not yet: make it current and look again.
			current = true
			if err := m.Current(ctx); err != nil {
				return fmt.Errorf("election %q: %w", e.name, err)
			}
			attempt--
			continue
		}
		if rerr != nil {
			return fmt.Errorf("election %q: %w", e.name, rerr)
		}
		if next == nil && to == "" && !current {
			// Nobody to hand over to, as far as the mirror shows: make sure
			// it is not only lagging (a progress notification, no request)
			// before a Txn that would fail on a candidate it has not seen.
			current = true
			if err := m.Current(ctx); err != nil {
				return fmt.Errorf("election %q: %w", e.name, err)
			}
			attempt--
			continue
		}
		cmps := []clientv3.Cmp{e.ownsLeadership(t)}
		then := []clientv3.Op{clientv3.OpDelete(e.leaderKey()), clientv3.OpDelete(e.transferKey())}
		if next != nil {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(next.Key), "=", next.CreateRev))
			then[0] = clientv3.OpPut(e.leaderKey(), next.Key, clientv3.WithLease(clientv3.LeaseID(next.Lease)))
		}
		if to == "" && (next == nil || rule.Priority) && attempt < 3 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c), "<", mirrorRev+1).WithRange(keys.RangeEnd(c)))
		}
		_, err = t.h.ReleaseIf(ctx, true, cmps, then...)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, hold.ErrCond):
			l, gerr := e.s.Client().Get(ctx, e.leaderKey())
			if gerr != nil {
				return fmt.Errorf("election %q: %w", e.name, etcderr.Explain(e.s.Client(), gerr))
			}
			if len(l.Kvs) == 0 || l.Kvs[0].ModRevision != t.token {
				// The leadership had moved on: let the candidacy go.
				_, err := t.h.Release(ctx)
				if err != nil && !errors.Is(err, ErrNotLeader) {
					return err
				}
				return nil
			}
			if to != "" {
				return fmt.Errorf("election %q: %w: %s left", e.name, ErrNoCandidate, to)
			}
			since = l.Header.Revision // pick again once the mirror has caught up
		case next != nil && etcderr.LeaseNotFound(err):
			// The successor's lease ended under us: pick again.
			since = 0
		case errors.Is(err, ErrNotLeader):
			return nil // lost already: nothing to hand over
		default:
			return err
		}
	}
}

// Leader returns the current leader of the election, as any reader sees
// it, or ErrNoLeader. It is one read of the election's keys (the leader
// key and the candidates, as many as there are replicas campaigning).
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	if e.err != nil {
		return Leader{}, e.err
	}
	return readLeader(ctx, e.s.Client(), e.sp)
}

// Done returns a channel that is closed when the leadership won by the
// last successful Campaign ends: the session ended, a key was deleted, or
// Resign or Transfer was called. Without leadership it returns a closed
// channel, so call it after Campaign returns.
func (e *Election) Done() <-chan struct{} {
	e.mu.Lock()
	t := e.cur
	e.mu.Unlock()
	if t != nil {
		return t.done
	}
	return e.idle
}

// Asked returns a channel that is closed when this leader is asked to step
// aside: a candidate of higher priority campaigns in an election whose
// rule preempts, or someone called RequestTransfer. The leader should stop
// its work and call Resign (which hands over to the rule's pick) or
// Transfer; Run does both. Without leadership it returns a channel that
// never closes.
func (e *Election) Asked() <-chan struct{} {
	if t := e.leading(); t != nil {
		return t.asked
	}
	return nil
}

// Token returns the fencing token of the leadership this Election holds:
// the revision at which this term began (the leader key's mod revision),
// strictly increasing across the successive leaders of one election,
// however they are chosen. It is 0 when it does not lead: before the
// first Campaign, after Resign or Transfer, and after the leadership was
// lost.
func (e *Election) Token() int64 {
	if t := e.leading(); t != nil {
		return t.token
	}
	return 0
}

// IsOwner returns a comparison that holds only while this Election leads,
// for guarding your own Txns with the leadership. Without leadership it
// returns a comparison that never holds.
func (e *Election) IsOwner() clientv3.Cmp {
	if t := e.leading(); t != nil {
		return e.ownsLeadership(t)
	}
	// No key has a negative mod revision.
	return clientv3.Compare(clientv3.ModRevision(e.leaderKey()), "<", 0)
}

// endTerm ends t once: closes Done, stops its watching, records the loss
// (nil for a resignation or a transfer) and the metrics.
func (e *Election) endTerm(t *term, lost error) {
	t.mu.Lock()
	if t.ended {
		t.mu.Unlock()
		return
	}
	t.ended, t.lost = true, lost
	close(t.done)
	stop, sp := t.stop, t.span
	t.span = nil
	t.mu.Unlock()
	endLead(sp, lost)
	if stop != nil {
		stop()
	}
	e.s.Metrics().Leader(e.name, false)
	if lost != nil {
		e.s.Logger().Warn("coord leadership lost", "kind", kind, "name", e.name, "token", t.token, "lease", e.s.LeaseHex(), "error", lost)
	} else {
		e.s.Logger().Debug("coord leadership ended", "kind", kind, "name", e.name, "token", t.token, "lease", e.s.LeaseHex())
	}
}
