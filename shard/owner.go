package shard

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Owner is who owns a shard.
type Owner struct {
	Shard string
	// Member is the owner: its ID always, and its metadata (its address,
	// for routing) while it is a member of the group (an owner that left
	// the group owns its shards until it has handed them over).
	Member group.Member
	// Token is the ownership's fencing token.
	Token int64
}

// Table is a map's state at one moment: who owns each shard, who the
// plan would give it to, and each member's share.
type Table struct {
	// Rev is the etcd revision the shards' owners were read at.
	Rev int64
	// Group is the group the map spreads over.
	Group string
	// Shards are the map's shards, in index order.
	Shards []Assignment
	// Members are the group's members that run the map, by ID.
	Members []Load
	// Converged says every shard is owned by the member the plan gives it
	// to: nothing is moving.
	Converged bool
}

// Assignment is one shard of a Table.
type Assignment struct {
	Shard string
	Index int
	// Owner is the owning member's ID, "" while the shard has no owner.
	Owner string
	Token int64
	// Target is the member the plan gives the shard to ("" when no member
	// runs the map); while it differs from Owner, the shard is moving.
	Target string
}

// Load is one member's part of a Table.
type Load struct {
	ID     string
	Weight int64
	// Owned is how many shards it owns; Quota how many the plan gives it:
	// its weight's share of the shards, within one.
	Owned, Quota int
}

// Owner returns who owns shard now, from the process's shared mirrors of
// the map and of the group: no RPC once they are loaded (a Run keeps
// them open), so a router can ask for every request. It may lag etcd by
// a watch event's flight time: the owner's fencing token is what keeps a
// late request from doing harm. It returns ErrNoOwner while the shard has
// none (a handoff under way), ErrUnknownShard for a shard the map does
// not have.
func (mp *Map) Owner(ctx context.Context, shard string) (Owner, error) {
	if mp.err != nil {
		return Owner{}, mp.err
	}
	return ownerOf(ctx, mp.hub, mp.sp, mp.mem.Group(), mp.index, mp.okeys, shard)
}

// Table reads the map and its group (two reads) and returns who owns what
// and what the plan would move.
func (mp *Map) Table(ctx context.Context) (Table, error) {
	if mp.err != nil {
		return Table{}, mp.err
	}
	return readTable(ctx, mp.s.Client(), mp.sp, mp.mem.Group())
}

// Observer follows a shard map without taking part: no session, nothing
// written, so it suits a router in front of the members, a dashboard, or
// `coord shard`. It is safe for concurrent use.
type Observer struct {
	cli  *clientv3.Client
	hub  *watch.Hub
	sp   keys.Space
	root string
	err  error

	mu    sync.Mutex
	names []string // from the stored spec, once read
	index map[string]int
	okeys []string
	g     *group.Group
}

// WithPrefix sets the root prefix of the map's keys for NewObserver
// (default "coord/"); a Map takes its root from its membership's session.
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// NewObserver returns an Observer of the map called name through cli. Of
// the options, only WithPrefix applies. A nil client or a bad name or
// root is reported, wrapping ErrInvalid, by every method.
func NewObserver(cli *clientv3.Client, name string, opts ...Option) *Observer {
	o := options{root: keys.DefaultRoot}
	for _, opt := range opts {
		opt(&o)
	}
	ob := &Observer{cli: cli}
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
	ob.root, ob.hub = root, watch.For(cli)
	return ob
}

// load reads the map's stored spec, once.
func (ob *Observer) load(ctx context.Context) error {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.names != nil {
		return nil
	}
	resp, err := ob.cli.Get(ctx, ob.sp.Single("spec"))
	if err != nil {
		return fmt.Errorf("shard map %q: %w", ob.sp.Name(), etcderr.Explain(ob.cli, err))
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("shard map %q: %w: no member has run it", ob.sp.Name(), ErrUnknownShard)
	}
	sp, err := decodeSpec(resp.Kvs[0].Value)
	if err != nil {
		return err
	}
	ob.names = sp.names()
	_, ob.index = hashesOf(ob.names)
	ob.okeys = ownerKeys(ob.sp, ob.names)
	ob.g = group.New(ob.cli, sp.Group, group.WithPrefix(ob.root))
	return nil
}

// Owner is Map.Owner, for a map some member has run; ErrUnknownShard
// when none has.
func (ob *Observer) Owner(ctx context.Context, shard string) (Owner, error) {
	if ob.err != nil {
		return Owner{}, ob.err
	}
	if err := ob.load(ctx); err != nil {
		return Owner{}, err
	}
	return ownerOf(ctx, ob.hub, ob.sp, ob.g, ob.index, ob.okeys, shard)
}

// Table is Map.Table; ErrUnknownShard when no member has run the map.
func (ob *Observer) Table(ctx context.Context) (Table, error) {
	if ob.err != nil {
		return Table{}, ob.err
	}
	if err := ob.load(ctx); err != nil {
		return Table{}, err
	}
	return readTable(ctx, ob.cli, ob.sp, ob.g)
}

func (s spec) names() []string {
	if s.Names != nil {
		return s.Names
	}
	names, _ := Count(s.Count).shardNames()
	return names
}

func ownerKeys(sp keys.Space, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = sp.Key("o", keys.Escape(n))
	}
	return out
}

func ownerOf(ctx context.Context, hub *watch.Hub, sp keys.Space, g *group.Group, index map[string]int, okeys []string, shard string) (Owner, error) {
	i, ok := index[shard]
	if !ok {
		return Owner{}, fmt.Errorf("shard map %q: %w: %q", sp.Name(), ErrUnknownShard, shard)
	}
	m := hub.Mirror(sp.Base())
	defer m.Release()
	var o owner
	var token int64
	err := m.Read(ctx, 0, func(v *watch.View) {
		if e := v.Get(okeys[i]); e != nil {
			rec, _ := e.Record()
			o, token = owner{present: true, id: rec.Value, lease: e.Lease}, e.CreateRev
		}
	})
	if err != nil {
		return Owner{}, fmt.Errorf("shard map %q: %w", sp.Name(), err)
	}
	if !o.present {
		return Owner{}, fmt.Errorf("shard map %q: shard %q: %w", sp.Name(), shard, ErrNoOwner)
	}
	out := Owner{Shard: shard, Member: group.Member{ID: o.id, Lease: clientv3.LeaseID(o.lease)}, Token: token}
	if mem, err := g.Lookup(ctx, o.id); err == nil && int64(mem.Lease) == o.lease {
		out.Member = mem
	}
	return out, nil
}

// readTable reads the map's keys (its spec, owners and participants, in
// pages) at one revision, and its group's members.
func readTable(ctx context.Context, cli *clientv3.Client, sp keys.Space, g *group.Group) (Table, error) {
	var kvs []*mvccpb.KeyValue
	var rev int64
	end := keys.RangeEnd(sp.Base())
	for from := sp.Base(); ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(1000)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, from, opts...)
		if err != nil {
			return Table{}, fmt.Errorf("shard map %q: %w", sp.Name(), etcderr.Explain(cli, err))
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
	view, err := g.Members(ctx)
	if err != nil {
		return Table{}, err
	}
	return tableOf(sp, rev, kvs, view)
}

// tableOf builds a Table from a map's keys and its group's members.
func tableOf(sp keys.Space, rev int64, kvs []*mvccpb.KeyValue, view group.View) (Table, error) {
	var st spec
	found := false
	type ownerAt struct {
		owner
		token int64
	}
	owners := map[string]ownerAt{}
	parts := map[participant]bool{}
	for _, kv := range kvs {
		k := string(kv.Key)
		rec, _ := keys.DecodeRecord(kv.Value)
		switch {
		case k == sp.Single("spec"):
			s, err := decodeSpec(kv.Value)
			if err != nil {
				return Table{}, err
			}
			st, found = s, true
		case strings.HasPrefix(k, sp.Part("o")):
			if name, err := keys.Unescape(strings.TrimPrefix(k, sp.Part("o"))); err == nil {
				owners[name] = ownerAt{owner{present: true, id: rec.Value, lease: kv.Lease}, kv.CreateRevision}
			}
		case strings.HasPrefix(k, sp.Part("p")):
			parts[participant{rec.Value, kv.Lease}] = true
		}
	}
	if !found {
		return Table{}, fmt.Errorf("shard map %q: %w: no member has run it", sp.Name(), ErrUnknownShard)
	}
	names := st.names()
	hashes, _ := hashesOf(names)
	cands, leases := liveCandidates(view.Members, parts)
	ows := make([]owner, len(names))
	for i, n := range names {
		ows[i] = owners[n].owner
	}
	target, ownerIdx, quota := planFor(hashes, cands, leases, ows)
	t := Table{Rev: rev, Group: st.Group, Shards: make([]Assignment, len(names)), Converged: len(cands) > 0}
	owned := make([]int, len(cands))
	for i, n := range names {
		a := Assignment{Shard: n, Index: i, Owner: owners[n].id, Token: owners[n].token}
		if target[i] >= 0 {
			a.Target = cands[target[i]].id
		}
		if ownerIdx[i] >= 0 {
			owned[ownerIdx[i]]++
		}
		if a.Owner == "" || ownerIdx[i] < 0 || a.Target != a.Owner {
			t.Converged = false
		}
		t.Shards[i] = a
	}
	for c, cd := range cands {
		t.Members = append(t.Members, Load{ID: cd.id, Weight: cd.weight, Owned: owned[c], Quota: quota[c]})
	}
	return t, nil
}
