package group

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInvalid is wrapped by the errors returned for a nil session or
// client, a bad group name or member id (empty, over 512 bytes, invalid
// UTF-8), metadata over MaxMetaBytes, a weight outside [1, MaxWeight] and
// a negative limit.
var ErrInvalid = errors.New("group: invalid argument")

// ErrDuplicate is returned by Join when a live member of the group
// already has the id.
var ErrDuplicate = errors.New("group: member id taken")

// ErrFull is returned by Join when the group already has as many members
// as WithLimit allows.
var ErrFull = errors.New("group: full")

// ErrLost is wrapped when a membership ended without Leave: its session
// ended (then session.ErrExpired or session.ErrClosed is wrapped too) or
// its key was deleted by someone else.
var ErrLost = errors.New("group: membership lost")

// ErrNotMember is returned by Leave and SetMeta on a membership that was
// already left, and by Lookup when no live member has the id.
var ErrNotMember = errors.New("group: not a member")

const (
	kind = keys.KindGroup
	// MaxMetaBytes bounds a member's metadata (keys and values).
	MaxMetaBytes = 1024
	// MaxWeight bounds a member's weight.
	MaxWeight = 1_000_000
	// part is where the members' keys live: m/<escaped id>.
	part = "m"
	// loadPage is how many members one read of Members fetches.
	loadPage = 1000
)

// Member is one member of a group, as a View shows it.
type Member struct {
	// ID is the member's id, unique among the group's live members.
	ID string
	// Meta is the metadata the member published (an address, a zone), at
	// most MaxMetaBytes.
	Meta map[string]string
	// Weight is the member's weight (1 unless it joined WithWeight): a
	// shard map gives it shards in proportion.
	Weight int64
	// Token is the create revision of the member's key: it increases with
	// every join, so a member that left and joined again under the same
	// id has a larger one.
	Token int64
	// Lease is the lease of the member's session.
	Lease clientv3.LeaseID
	// Since is when the member asked to join.
	Since time.Time
}

// View is a group's members at one revision of etcd.
type View struct {
	// Rev is the etcd revision the view is exact at.
	Rev int64
	// Members are the live members, sorted by ID.
	Members []Member
	// Joined, Left and Updated are, in a view Watch sends, the members
	// that joined, left and changed their metadata since the view it sent
	// before (in the first view, every member has joined). Members leaves
	// them nil.
	Joined, Left, Updated []Member
}

// Get returns the member with id, if it is in the view.
func (v View) Get(id string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(v.Members, id, func(m Member, id string) int { return strings.Compare(m.ID, id) })
	if !ok {
		return Member{}, false
	}
	return v.Members[i], true
}

// IDs returns the members' ids, sorted.
func (v View) IDs() []string {
	out := make([]string, len(v.Members))
	for i, m := range v.Members {
		out[i] = m.ID
	}
	return out
}

// Group reads a group's members: Members for one look, Watch to follow
// every change. It needs no session, writes nothing, and is safe for
// concurrent use. Join a group to be one of its members.
//
// Keys, under <root>group/<name>/: one key per member, m/<escaped id>,
// on the member's session lease, whose value is its record (metadata,
// weight, join time).
type Group struct {
	cli    *clientv3.Client
	hub    *watch.Hub
	sp     keys.Space
	logger *slog.Logger
	err    error
}

// Option configures New.
type Option func(*options)

type options struct {
	root   string
	logger *slog.Logger
}

// WithPrefix sets the root prefix of the group's keys (default "coord/"):
// the root its members' sessions were made with (session.WithPrefix).
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// WithLogger sets where a Watch that ends early says why.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// New returns the group called name, read through cli. A nil client or
// a bad name or root is reported, wrapping ErrInvalid, by every method.
func New(cli *clientv3.Client, name string, opts ...Option) *Group {
	o := options{root: keys.DefaultRoot, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	g := &Group{cli: cli, logger: o.logger}
	if cli == nil {
		g.err = fmt.Errorf("%w: nil etcd client", ErrInvalid)
		return g
	}
	root, err := keys.NormalizeRoot(o.root)
	if err == nil {
		g.sp, err = keys.New(root, kind, name)
	}
	if err != nil {
		g.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return g
	}
	g.hub = watch.For(cli)
	return g
}

// Name returns the group's name.
func (g *Group) Name() string { return g.sp.Name() }

// Members returns the group's live members now: a linearizable read of
// its member keys (one Range per thousand members).
func (g *Group) Members(ctx context.Context) (View, error) {
	if g.err != nil {
		return View{}, g.err
	}
	p := g.sp.Part(part)
	end := keys.RangeEnd(p)
	var rev int64
	var kvs []*mvccpb.KeyValue
	for from := p; ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := g.cli.Get(ctx, from, opts...)
		if err != nil {
			return View{}, fmt.Errorf("group %q: %w", g.sp.Name(), etcderr.Explain(g.cli, err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		kvs = append(kvs, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	v := View{Rev: rev, Members: make([]Member, 0, len(kvs))}
	for _, kv := range kvs {
		if m, ok := memberOf(g.sp, string(kv.Key), kv.CreateRevision, kv.Lease, kv.Value, nil); ok {
			v.Members = append(v.Members, m)
		}
	}
	sortMembers(v.Members)
	return v, nil
}

// memberOf decodes one member key; rec, when given, is its decoded
// record (a mirror's entry decodes it once).
func memberOf(sp keys.Space, key string, createRev, lease int64, value []byte, rec *keys.Record) (Member, bool) {
	esc, ok := strings.CutPrefix(key, sp.Part(part))
	if !ok {
		return Member{}, false
	}
	id, err := keys.Unescape(esc)
	if err != nil {
		return Member{}, false
	}
	if rec == nil {
		r, _ := keys.DecodeRecord(value)
		rec = &r
	}
	m := Member{ID: id, Token: createRev, Lease: clientv3.LeaseID(lease), Since: rec.Since, Weight: max(rec.N, 1)}
	if len(rec.Meta) > 0 {
		m.Meta = make(map[string]string, len(rec.Meta))
		for k, v := range rec.Meta {
			m.Meta[k] = v
		}
	}
	return m, true
}

func sortMembers(ms []Member) {
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
}

// viewOf returns the members in a mirror of the group's keys, sorted.
func viewOf(sp keys.Space, v *watch.View) []Member {
	var out []Member
	v.Line(part).Each(func(e *watch.Entry) bool {
		rec, _ := e.Record()
		if m, ok := memberOf(sp, e.Key, e.CreateRev, e.Lease, e.Value, &rec); ok {
			out = append(out, m)
		}
		return true
	})
	sortMembers(out)
	return out
}

func metaSize(meta map[string]string) int {
	n := 0
	for k, v := range meta {
		n += len(k) + len(v)
	}
	return n
}

// Lookup returns the live member with id, from the process's shared
// mirror of the group: no RPC once the mirror is loaded (it opens with
// one watch and one read, and stays open while the process uses it), so
// a router can look up every request's owner. It may lag etcd by a watch
// event's flight time. It returns ErrNotMember when no live member has
// the id.
func (g *Group) Lookup(ctx context.Context, id string) (Member, error) {
	if g.err != nil {
		return Member{}, g.err
	}
	m := g.hub.Mirror(g.sp.Base())
	defer m.Release()
	var out Member
	found := false
	err := m.Read(ctx, 0, func(v *watch.View) {
		e := v.Get(g.sp.Key(part, keys.Escape(id)))
		if e == nil {
			return
		}
		rec, _ := e.Record()
		out, found = memberOf(g.sp, e.Key, e.CreateRev, e.Lease, e.Value, &rec)
	})
	if err != nil {
		return Member{}, fmt.Errorf("group %q: %w", g.sp.Name(), err)
	}
	if !found {
		return Member{}, fmt.Errorf("group %q: %w: no live member %q", g.sp.Name(), ErrNotMember, id)
	}
	return out, nil
}
