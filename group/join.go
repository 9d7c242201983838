package group

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// JoinOption configures Join.
type JoinOption func(*joinOptions)

type joinOptions struct {
	weight int64
	limit  int
}

// WithWeight sets the member's weight, in [1, MaxWeight] (default 1): a
// shard map over the group gives each member shards in proportion to its
// weight.
func WithWeight(w int64) JoinOption { return func(o *joinOptions) { o.weight = w } }

// WithLimit makes Join refuse, with ErrFull, to join a group that already
// has n members (0, the default: no limit). The count and the join are
// one atomic step, so concurrent joins never overshoot it.
func WithLimit(n int) JoinOption { return func(o *joinOptions) { o.limit = n } }

// Membership is this process's place in a group: a member key on the
// session's lease, from Join until Leave or until the session ends. It is
// safe for concurrent use.
type Membership struct {
	g   *Group
	s   *lease.Session
	ss  *session.Session
	id  string
	cfg hold.Config
	h   *hold.Hold

	mu   sync.Mutex // serializes SetMeta
	meta map[string]string
}

// Join makes id a member of the group called name, with metadata meta,
// on session s, and returns once its key is written and confirmed
// against the session. It is one Txn (two with WithLimit, which counts
// the members first).
//
// It returns ErrDuplicate when a live member already has id (a member
// that crashed keeps its id until its session's TTL runs out), ErrFull
// when WithLimit's limit is reached, an error wrapping ErrInvalid for bad
// arguments, and the session's error when it has ended. On any failure,
// and when ctx ends, nothing is left behind.
func Join(ctx context.Context, s *session.Session, name, id string, meta map[string]string, opts ...JoinOption) (*Membership, error) {
	o := joinOptions{weight: 1}
	for _, opt := range opts {
		opt(&o)
	}
	if s == nil {
		return nil, fmt.Errorf("%w: nil session", ErrInvalid)
	}
	ls := lease.Of(s)
	sp, err := keys.New(ls.Root(), kind, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	label := fmt.Sprintf("group %q member %q", name, id)
	switch {
	case keys.ValidateName(id) != nil:
		return nil, fmt.Errorf("group %q: %w: member id: %w", name, ErrInvalid, keys.ValidateName(id))
	case metaSize(meta) > MaxMetaBytes:
		return nil, fmt.Errorf("%s: %w: metadata of %d bytes, over the %d-byte limit", label, ErrInvalid, metaSize(meta), MaxMetaBytes)
	case o.weight < 1 || o.weight > MaxWeight:
		return nil, fmt.Errorf("%s: %w: weight %d is outside [1, %d]", label, ErrInvalid, o.weight, MaxWeight)
	case o.limit < 0:
		return nil, fmt.Errorf("%s: %w: limit %d is negative", label, ErrInvalid, o.limit)
	}
	if err := ls.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	cli := ls.Client()
	g := &Group{cli: cli, hub: watch.For(cli), sp: sp, logger: ls.Logger()}
	m := &Membership{g: g, s: ls, ss: s, id: id, meta: maps.Clone(meta),
		cfg: hold.Config{Kind: kind, Names: []string{name}, Label: label, Noun: "membership", Named: true,
			Errors: hold.Errors{Lost: ErrLost, NotHeld: ErrNotMember}}}
	rec := keys.Record{Meta: meta}
	if o.weight > 1 {
		rec.N = o.weight
	}
	m.h = hold.New(ls, &m.cfg, rec, hold.Key{Key: sp.Key(part, keys.Escape(id)), Watch: watch.MirrorOf{Hub: g.hub, Base: sp.Base()}})
	if err := m.create(ctx, o.limit); err != nil {
		m.h.Abandon(ctx)
		return nil, err
	}
	if err := m.h.Grant(); err != nil {
		m.h.Abandon(ctx)
		return nil, err
	}
	return m, nil
}

// create puts the member key: absent, and with a limit, only while no
// member joined since the count that found room (a range compare, which
// makes the server read the members' keys: a join pays it, nothing else).
func (m *Membership) create(ctx context.Context, limit int) error {
	p := m.g.sp.Part(part)
	end := keys.RangeEnd(p)
	for {
		var spec hold.Spec
		if limit > 0 {
			resp, err := m.g.cli.Get(ctx, p, clientv3.WithRange(end), clientv3.WithCountOnly())
			if err != nil {
				return fmt.Errorf("%s: %w", m.cfg.Label, etcderr.Explain(m.g.cli, err))
			}
			if resp.Count >= int64(limit) {
				return fmt.Errorf("%s: %w: %d members, the limit is %d", m.cfg.Label, ErrFull, resp.Count, limit)
			}
			spec.If = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(p), "<", resp.Header.Revision+1).WithRange(end)}
		}
		created, err := m.h.Create(ctx, spec)
		switch {
		case err != nil:
			return err
		case created.Taken:
			return fmt.Errorf("%s: %w", m.cfg.Label, ErrDuplicate)
		case created.Failed():
			continue // a member joined since the count: count again
		}
		return nil
	}
}

// ID returns the member's id.
func (m *Membership) ID() string { return m.id }

// Group returns the group joined.
func (m *Membership) Group() *Group { return m.g }

// Session returns the session the membership lives on.
func (m *Membership) Session() *session.Session { return m.ss }

// Key returns the etcd key of the membership.
func (m *Membership) Key() string { return m.h.Key() }

// Token returns the membership's fencing token: the create revision of
// its key, larger for every later join of any member of the group.
func (m *Membership) Token() int64 { return m.h.Rev() }

// Weight returns the weight the member joined with.
func (m *Membership) Weight() int64 { return max(m.h.Record().N, 1) }

// Meta returns the member's metadata, as last set.
func (m *Membership) Meta() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.meta)
}

// IsOwner returns a comparison that holds while the membership does, to
// guard your own Txns.
func (m *Membership) IsOwner() clientv3.Cmp { return m.h.IsOwner()[0] }

// Done returns a channel closed when the membership ends: Leave, or its
// loss (the session ended, or the key was deleted). It closes before the
// server could let another process join under the same id.
func (m *Membership) Done() <-chan struct{} { return m.h.Done() }

// Err returns nil while the process is a member, an error wrapping
// ErrLost (and the session's error, when that was the cause) once the
// membership was lost, or ErrNotMember after Leave.
func (m *Membership) Err() error {
	if err := m.h.Lost(); err != nil {
		return err
	}
	if !m.h.Held() {
		return fmt.Errorf("%s: %w", m.cfg.Label, ErrNotMember)
	}
	return nil
}

// SetMeta replaces the member's metadata, in one Txn fenced on the
// membership, so it can never write to a later member's key of the same
// id. It returns ErrLost if the membership was lost, ErrNotMember after
// Leave and an error wrapping ErrInvalid for metadata over MaxMetaBytes.
// Watchers see the change as an Updated member.
func (m *Membership) SetMeta(ctx context.Context, meta map[string]string) error {
	if n := metaSize(meta); n > MaxMetaBytes {
		return fmt.Errorf("%s: %w: metadata of %d bytes, over the %d-byte limit", m.cfg.Label, ErrInvalid, n, MaxMetaBytes)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.Err(); err != nil {
		return err
	}
	rec := m.h.Record()
	rec.Meta = meta
	resp, err := m.g.cli.Txn(ctx).If(m.h.IsOwner()...).
		Then(clientv3.OpPut(m.h.Key(), rec.Encode(), clientv3.WithLease(m.s.Lease()))).Commit()
	if err != nil {
		return fmt.Errorf("%s: set metadata: %w", m.cfg.Label, etcderr.Explain(m.g.cli, err))
	}
	if !resp.Succeeded {
		// The key is gone: a loss its watch reports too, with its cause.
		select {
		case <-m.h.Done():
			if err := m.Err(); err != nil {
				return err
			}
		case <-ctx.Done():
		}
		return fmt.Errorf("%s: %w: %w", m.cfg.Label, ErrLost, watch.ErrGone)
	}
	m.meta = maps.Clone(meta)
	return nil
}

// Leave deletes the member key (fenced on it being this membership's,
// so a retry can never remove a later member's key of the same id).
// Watchers see the member leave at once. It returns ErrNotMember when
// called again, ErrLost when the membership had been lost; on any other
// error it may still be a member: call Leave again.
func (m *Membership) Leave(ctx context.Context) error {
	_, err := m.h.Release(ctx)
	return err
}
