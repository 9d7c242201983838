package inspect

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
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
	Kind    string // "lock", "rwlock", "election", "semaphore", "barrier", "dbarrier", "latch", "queue"
	Name    string
	Holders []Member // who holds it now (the leader, the lock holder, permit holders, readers)
	Waiters []Member // who waits, first in line first
	Info    map[string]string
}

// List returns every primitive in use under root (for example "coord/"),
// sorted by kind and name.
func List(ctx context.Context, cli *clientv3.Client, root string) ([]Primitive, error) {
	root, err := keys.NormalizeRoot(root)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Get(ctx, root, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("inspect: read %s: %w", root, err)
	}
	owners := map[int64]string{}
	groups := map[[2]string][]*mvccpb.KeyValue{}
	var order [][2]string
	for _, kv := range resp.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), root)
		kind, after, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		if kind == "retired" {
			continue // Session.Retire's marks, not a primitive
		}
		if kind == keys.KindSession {
			if id, err := strconv.ParseInt(after, 16, 64); err == nil {
				owners[id] = string(kv.Value)
			}
			continue
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
	ttls := leaseTTLs(ctx, cli, resp.Kvs)
	var out []Primitive
	for _, g := range order {
		sp, err := keys.New(root, g[0], g[1])
		if err != nil {
			continue
		}
		p := build(ctx, cli, root, sp, groups[g], owners, ttls)
		out = append(out, p)
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
// when nothing of it is in etcd.
func Get(ctx context.Context, cli *clientv3.Client, root, kind, name string) (Primitive, error) {
	root, err := keys.NormalizeRoot(root)
	if err != nil {
		return Primitive{}, err
	}
	sp, err := keys.New(root, kind, name)
	if err != nil {
		return Primitive{}, err
	}
	resp, err := cli.Get(ctx, sp.Base(), clientv3.WithPrefix())
	if err != nil {
		return Primitive{}, fmt.Errorf("inspect: read %s: %w", sp.Base(), err)
	}
	owners := map[int64]string{}
	if sess, err := cli.Get(ctx, root+keys.KindSession+"/", clientv3.WithPrefix()); err == nil {
		for _, kv := range sess.Kvs {
			if id, err := strconv.ParseInt(strings.TrimPrefix(string(kv.Key), root+keys.KindSession+"/"), 16, 64); err == nil {
				owners[id] = string(kv.Value)
			}
		}
	}
	return build(ctx, cli, root, sp, resp.Kvs, owners, leaseTTLs(ctx, cli, resp.Kvs)), nil
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

func member(kv *mvccpb.KeyValue, owners map[int64]string, ttls map[int64]time.Duration) Member {
	m := Member{Key: string(kv.Key), Token: kv.CreateRevision, Lease: kv.Lease, Value: string(kv.Value), Owner: owners[kv.Lease], TTLLeft: -1}
	if kv.Lease != 0 {
		m.TTLLeft = ttls[kv.Lease]
	}
	if rec, err := keys.DecodeRecord(kv.Value); err == nil {
		m.Since, m.Value, m.Weight = rec.Since, rec.Value, rec.N
	} else if t, err := time.Parse(time.RFC3339Nano, m.Value); err == nil {
		m.Since, m.Value = t, ""
	}
	return m
}

// part returns the members under one part, oldest first.
func part(sp keys.Space, kvs []*mvccpb.KeyValue, name string, owners map[int64]string, ttls map[int64]time.Duration) []Member {
	pre := sp.Part(name)
	var out []Member
	for _, kv := range kvs {
		if strings.HasPrefix(string(kv.Key), pre) {
			out = append(out, member(kv, owners, ttls))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Token < out[j].Token })
	return out
}

func single(sp keys.Space, kvs []*mvccpb.KeyValue, leaf string) (string, bool) {
	k := sp.Single(leaf)
	for _, kv := range kvs {
		if string(kv.Key) == k {
			return string(kv.Value), true
		}
	}
	return "", false
}

func build(ctx context.Context, cli *clientv3.Client, root string, sp keys.Space, kvs []*mvccpb.KeyValue, owners map[int64]string, ttls map[int64]time.Duration) Primitive {
	p := Primitive{Kind: sp.Kind(), Name: sp.Name(), Info: map[string]string{}}
	switch sp.Kind() {
	case keys.KindLock, keys.KindElection:
		name := "w"
		if sp.Kind() == keys.KindElection {
			name = "c"
		}
		line := part(sp, kvs, name, owners, ttls)
		if len(line) > 0 {
			p.Holders, p.Waiters = line[:1], line[1:]
		}
	case keys.KindRWLock:
		line := append(part(sp, kvs, "r", owners, ttls), part(sp, kvs, "w", owners, ttls)...)
		sort.Slice(line, func(i, j int) bool { return line[i].Token < line[j].Token })
		writer := func(m Member) bool { return strings.HasPrefix(m.Key, sp.Part("w")) }
		// Readers before the first writer share the lock; a writer holds
		// only when it is first.
		n := 0
		for n < len(line) && !writer(line[n]) {
			n++
		}
		switch {
		case len(line) == 0:
		case n == 0:
			p.Holders, p.Waiters, p.Info["mode"] = line[:1], line[1:], "write"
		default:
			p.Holders, p.Waiters, p.Info["mode"] = line[:n], line[n:], "read"
		}
	case keys.KindSemaphore:
		capacity := int64(0)
		if v, ok := single(sp, kvs, "capacity"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				capacity, _ = strconv.ParseInt(f[0], 10, 64)
			}
			p.Info["capacity"] = strconv.FormatInt(capacity, 10)
		}
		var used int64
		line := part(sp, kvs, "q", owners, ttls)
		for i := range line {
			line[i].Weight = max(line[i].Weight, 1)
		}
		for i, m := range line {
			// Strict FIFO: the first request that does not fit blocks
			// every later one.
			if used+m.Weight > capacity {
				p.Waiters = line[i:]
				break
			}
			used += m.Weight
			p.Holders = append(p.Holders, m)
		}
		p.Info["in use"] = strconv.FormatInt(used, 10)
	case keys.KindBarrier:
		p.Holders = part(sp, kvs, "h", owners, ttls)
		if _, ok := single(sp, kvs, "released"); ok {
			p.Info["released"] = "yes"
		}
		if len(p.Holders) > 0 {
			p.Info["state"] = "held"
		} else {
			p.Info["state"] = "open"
		}
	case keys.KindDouble:
		p.Holders = part(sp, kvs, "p", owners, ttls)
		for _, leaf := range []string{"count", "round"} {
			if v, ok := single(sp, kvs, leaf); ok {
				p.Info[leaf] = v
			}
		}
	case keys.KindLatch:
		if v, ok := single(sp, kvs, "count"); ok {
			p.Info["count"] = v
		}
		p.Info["counted down"] = strconv.Itoa(len(part(sp, kvs, "d", owners, ttls)))
	case keys.KindQueue:
		q := queue.New(cli, sp.Name(), queue.WithPrefix(root))
		if st, err := q.Stats(ctx); err == nil {
			p.Info["ready"] = strconv.FormatInt(st.Ready, 10)
			p.Info["claimed"] = strconv.FormatInt(st.Claimed, 10)
			p.Info["delayed"] = strconv.FormatInt(st.Delayed, 10)
			p.Info["dead"] = strconv.FormatInt(st.Dead, 10)
		}
		p.Holders = part(sp, kvs, "c", owners, ttls)
	}
	return p
}
