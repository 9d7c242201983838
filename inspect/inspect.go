package inspect

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one participant of a primitive: a holder or a waiter.
type Member struct {
	Key     string
	Token   int64         // the key's create revision: its fencing token
	Lease   int64         // 0 for keys not bound to a session
	TTLLeft time.Duration // lease time left; -1 for keys without a lease
	Owner   string        // host:pid of the session that owns the lease, when known
	Value   string        // a candidate's value, a participant's data
	Weight  int64         // semaphore permits asked for
	Since   time.Time     // when it asked (locks record it); zero when unknown
}

// Primitive is the state of one named primitive.
type Primitive struct {
	Kind    string // one of Kinds
	Name    string
	Holders []Member // who holds it now (the leader, the lock holder, permit holders, readers)
	Waiters []Member // who waits, first in line first
	Info    map[string]string
}

// Kinds returns the kinds of primitive this package reads, in the order
// List sorts them.
func Kinds() []string {
	return []string{keys.KindBarrier, keys.KindDouble, keys.KindElection, keys.KindLatch,
		keys.KindLock, keys.KindQueue, keys.KindRWLock, keys.KindSemaphore}
}

// KnownKind reports whether kind is one of Kinds.
func KnownKind(kind string) bool {
	_, ok := parsers[kind]
	return ok
}

// InUse reports whether anyone takes part in p now: a holder or a waiter,
// a queue with messages, a latch still counting down. Keys that outlive
// their users (a semaphore's capacity, a barrier's released mark, a done
// latch) do not make a primitive in use.
func (p Primitive) InUse() bool {
	switch p.Kind {
	case keys.KindQueue:
		for _, k := range []string{"ready", "claimed", "delayed", "dead"} {
			if n, _ := strconv.ParseInt(p.Info[k], 10, 64); n > 0 {
				return true
			}
		}
		return false
	case keys.KindLatch:
		count, err := strconv.ParseInt(p.Info["count"], 10, 64)
		done, _ := strconv.ParseInt(p.Info["counted down"], 10, 64)
		return err == nil && done < count
	}
	return len(p.Holders)+len(p.Waiters) > 0
}

// List returns every primitive in use under root (for example "coord/"),
// sorted by kind and name. Primitives whose only keys are what their last
// users left behind are not listed (see InUse); Get shows them.
func List(ctx context.Context, cli *clientv3.Client, root string) ([]Primitive, error) {
	root, err := keys.NormalizeRoot(root)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, root, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("inspect: read %s: %w", root, err)
	}
	r := &reader{ctx: ctx, cli: cli, root: root, owners: map[int64]string{}}
	groups := map[[2]string][]*mvccpb.KeyValue{}
	var order [][2]string
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), root)
		kind, after, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		if kind == keys.KindSession {
			r.owner(after, kv.Value)
			continue
		}
		if !KnownKind(kind) {
			continue // Session.Retire's marks, or not coord's
		}
		esc, _, _ := strings.Cut(after, "/")
		name, err := keys.Unescape(esc)
		if err != nil {
			continue
		}
		g := [2]string{kind, name}
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], kv)
	}
	r.ttls = leaseTTLs(ctx, cli, resp.Kvs)
	var out []Primitive
	for _, g := range order {
		sp, err := keys.New(root, g[0], g[1])
		if err != nil {
			continue
		}
		if p := r.build(sp, groups[g]); p.InUse() {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Get returns the state of one primitive, or a Primitive with no members
// when nothing of it is in etcd. An unknown kind is an error.
func Get(ctx context.Context, cli *clientv3.Client, root, kind, name string) (Primitive, error) {
	root, err := keys.NormalizeRoot(root)
	if err != nil {
		return Primitive{}, err
	}
	if !KnownKind(kind) {
		return Primitive{}, fmt.Errorf("inspect: unknown kind %q (kinds: %s)", kind, strings.Join(Kinds(), ", "))
	}
	sp, err := keys.New(root, kind, name)
	if err != nil {
		return Primitive{}, err
	}
	resp, err := cli.Get(ctx, sp.Base(), clientv3.WithPrefix())
	if err != nil {
		return Primitive{}, fmt.Errorf("inspect: read %s: %w", sp.Base(), err)
	}
	r := &reader{ctx: ctx, cli: cli, root: root, owners: map[int64]string{}}
	if sess, err := cli.Get(ctx, root+keys.KindSession+"/", clientv3.WithPrefix()); err == nil {
		for _, kv := range sess.Kvs {
			r.owner(strings.TrimPrefix(string(kv.Key), root+keys.KindSession+"/"), kv.Value)
		}
	}
	r.ttls = leaseTTLs(ctx, cli, resp.Kvs)
	return r.build(sp, resp.Kvs), nil
}

// reader holds what one List or Get read besides a primitive's own keys.
type reader struct {
	ctx    context.Context
	cli    *clientv3.Client
	root   string
	owners map[int64]string // lease → host:pid, from the sessions' marker keys
	ttls   map[int64]time.Duration
}

func (r *reader) owner(leaseHex string, value []byte) {
	if id, err := strconv.ParseInt(leaseHex, 16, 64); err == nil {
		r.owners[id] = string(value)
	}
}

func leaseTTLs(ctx context.Context, cli *clientv3.Client, kvs []*mvccpb.KeyValue) map[int64]time.Duration {
	ttls := map[int64]time.Duration{}
	for _, kv := range kvs {
		if kv.Lease == 0 {
			continue
		}
		if _, ok := ttls[kv.Lease]; ok {
			continue
		}
		resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
		if err != nil || resp.TTL < 0 {
			ttls[kv.Lease] = 0
			continue
		}
		ttls[kv.Lease] = time.Duration(resp.TTL) * time.Second
	}
	return ttls
}

func (r *reader) build(sp keys.Space, kvs []*mvccpb.KeyValue) Primitive {
	p := Primitive{Kind: sp.Kind(), Name: sp.Name(), Info: map[string]string{}}
	if parse := parsers[sp.Kind()]; parse != nil {
		parse(r, &p, prim{sp: sp, kvs: kvs})
	}
	return p
}

// prim is one primitive's keys, as read.
type prim struct {
	sp  keys.Space
	kvs []*mvccpb.KeyValue
}

// part returns the members under one part, oldest first.
func (r *reader) part(k prim, name string) []Member {
	pre := k.sp.Part(name)
	var out []Member
	for _, kv := range k.kvs {
		if strings.HasPrefix(string(kv.Key), pre) {
			out = append(out, r.member(kv))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Token < out[j].Token })
	return out
}

func (r *reader) member(kv *mvccpb.KeyValue) Member {
	m := Member{Key: string(kv.Key), Token: kv.CreateRevision, Lease: kv.Lease, Value: string(kv.Value), Owner: r.owners[kv.Lease], TTLLeft: -1}
	if kv.Lease != 0 {
		m.TTLLeft = r.ttls[kv.Lease]
	}
	return m
}

// single returns the value of a key that stands alone in the space.
func (k prim) single(leaf string) (string, bool) {
	key := k.sp.Single(leaf)
	for _, kv := range k.kvs {
		if string(kv.Key) == key {
			return string(kv.Value), true
		}
	}
	return "", false
}
