package inspect

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Member is one participant of a primitive: a holder or a waiter.
type Member struct {
	Key     string
	Token   int64         // its fencing token: the key's create revision (a leader's: the leader key's mod revision)
	Lease   int64         // 0 for keys not bound to a session
	TTLLeft time.Duration // lease time left; -1 for keys without a lease
	Owner   string        // host:pid of the session that owns the lease, when known
	Value   string        // a candidate's value, a participant's data
	Weight  int64         // semaphore permits asked for
	Since   time.Time     // when it asked; zero when unknown
	// Priority, Meta and Observer are an election candidate's.
	Priority int
	Meta     map[string]string
	Observer bool
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
	return []string{keys.KindBarrier, keys.KindDouble, keys.KindElection, keys.KindGroup, keys.KindLatch,
		keys.KindLock, keys.KindQueue, keys.KindRateLimit, keys.KindRWLock, keys.KindSchedule, keys.KindSemaphore, keys.KindShard}
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
//
// It pages through the root, a page at a time, building each primitive
// as soon as its keys are read; queues are found by their keys alone and
// counted by the server, so no payload crosses the network. A root with
// 100,000 keys costs a few megabytes of client memory, not its size in
// values. Every read is at one revision,
// so the listing is one consistent snapshot (if etcd compacts that
// revision while List reads, it starts again at a new one).
func List(ctx context.Context, cli *clientv3.Client, root string, opts ...Option) ([]Primitive, error) {
	root, err := keys.NormalizeRoot(root)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		out, err := list(ctx, cli, root, opts)
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		return out, err
	}
}

func list(ctx context.Context, cli *clientv3.Client, root string, opts []Option) ([]Primitive, error) {
	r := newReader(ctx, cli, root, opts)
	if err := r.sessions(); err != nil {
		return nil, err
	}
	var out []Primitive
	keep := func(p Primitive) {
		if p.InUse() {
			out = append(out, p)
		}
	}
	// Every kind but queues is read with its values in one pass, a page at
	// a time, each primitive built as soon as its keys are all seen (they
	// are contiguous). The queues' range is left out of that pass, so no
	// page can carry a payload, and so is the sessions' (read first).
	qs, ss := root+keys.KindQueue+"/", root+keys.KindSession+"/"
	var cur prim
	flush := func() {
		if cur.kvs != nil {
			keep(r.build(cur))
		}
		cur = prim{}
	}
	for _, rg := range [][2]string{{root, qs}, {keys.RangeEnd(qs), ss}, {keys.RangeEnd(ss), keys.RangeEnd(root)}} {
		err := r.scan(rg[0], rg[1], false, func(kv *mvccpb.KeyValue) string {
			if cur.kvs != nil && strings.HasPrefix(string(kv.Key), cur.sp.Base()) {
				cur.kvs = append(cur.kvs, kv) // the same primitive as the key before
				return ""
			}
			sp, skip := r.spaceOf(kv)
			if skip != "" {
				flush()
				return skip
			}
			if cur.kvs == nil || cur.sp.Base() != sp.Base() {
				flush()
				cur.sp = sp
			}
			cur.kvs = append(cur.kvs, kv)
			return ""
		})
		if err != nil {
			return nil, err
		}
		flush()
	}
	// Queues: found by their keys alone, one jump past each, then counted
	// by the server; only their claims are read.
	var queues []keys.Space
	err := r.scan(qs, keys.RangeEnd(qs), true, func(kv *mvccpb.KeyValue) string {
		sp, skip := r.spaceOf(kv)
		if skip != "" {
			return skip
		}
		queues = append(queues, sp)
		return keys.RangeEnd(sp.Base())
	})
	if err != nil {
		return nil, err
	}
	for _, sp := range queues {
		p, err := r.primitive(sp)
		if err != nil {
			return nil, err
		}
		keep(p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// spaceOf returns the primitive a key belongs to, or where to skip to
// when it belongs to none this package reads.
func (r *reader) spaceOf(kv *mvccpb.KeyValue) (keys.Space, string) {
	rest := strings.TrimPrefix(string(kv.Key), r.root)
	kind, after, ok := strings.Cut(rest, "/")
	if !ok {
		return keys.Space{}, string(kv.Key) + "\x00"
	}
	if !KnownKind(kind) {
		return keys.Space{}, keys.RangeEnd(r.root + kind + "/") // not coord's
	}
	esc, _, _ := strings.Cut(after, "/")
	name, err := keys.Unescape(esc)
	var sp keys.Space
	if err == nil {
		sp, err = keys.New(r.root, kind, name)
	}
	if err != nil {
		return keys.Space{}, keys.RangeEnd(r.root + kind + "/" + esc + "/")
	}
	return sp, ""
}

// Get returns the state of one primitive, or a Primitive with no members
// when nothing of it is in etcd. An unknown kind is an error.
func Get(ctx context.Context, cli *clientv3.Client, root, kind, name string, opts ...Option) (Primitive, error) {
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
	for attempt := 0; ; attempt++ {
		r := newReader(ctx, cli, root, opts)
		err := r.sessions()
		var p Primitive
		if err == nil {
			p, err = r.primitive(sp)
		}
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		return p, err
	}
}

// pageSize is how many keys one read returns at most.
const pageSize = 512

// reader holds what one List or Get read besides a primitive's own keys.
type reader struct {
	ctx    context.Context
	cli    *clientv3.Client
	root   string
	rev    int64            // the revision every read is at, once known
	owners map[int64]string // lease → host:pid, from the sessions' marker keys
	ttls   map[int64]time.Duration
	noTTL  bool
}

// Option configures List and Get.
type Option func(*reader)

// WithoutTTL leaves out the lease time left (Member.TTLLeft stays -1, as
// for a key without a lease; Member.Lease still names the lease), and
// with it the one TimeToLive per distinct lease: for callers that read
// again and again, such as a live page, whose cost would otherwise grow
// with the processes in line.
func WithoutTTL() Option { return func(r *reader) { r.noTTL = true } }

func newReader(ctx context.Context, cli *clientv3.Client, root string, opts []Option) *reader {
	r := &reader{ctx: ctx, cli: cli, root: root, owners: map[int64]string{}, ttls: map[int64]time.Duration{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// scan reads [from, end) a page at a time, at the reader's revision (the
// first page fixes it), calling fn for every key; fn returns where to go
// on from ("" for the next key), so a caller can skip what it needs no
// more of.
func (r *reader) scan(from, end string, keysOnly bool, fn func(kv *mvccpb.KeyValue) (skipTo string)) error {
	for from < end {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize)}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		if r.rev != 0 {
			opts = append(opts, clientv3.WithRev(r.rev))
		}
		resp, err := r.cli.Get(r.ctx, from, opts...)
		if err != nil {
			return fmt.Errorf("inspect: read %s: %w", from, err)
		}
		if r.rev == 0 {
			r.rev = resp.Header.Revision
		}
		next := ""
		for _, kv := range resp.Kvs {
			if next != "" && string(kv.Key) < next {
				continue
			}
			next = fn(kv)
		}
		if !resp.More {
			return nil
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		from = max(last, next)
	}
	return nil
}

// sessions reads the owners (host:pid) of the root's sessions.
func (r *reader) sessions() error {
	pre := r.root + keys.KindSession + "/"
	return r.scan(pre, keys.RangeEnd(pre), false, func(kv *mvccpb.KeyValue) string {
		if id, err := strconv.ParseInt(strings.TrimPrefix(string(kv.Key), pre), 16, 64); err == nil {
			r.owners[id] = string(kv.Value)
		}
		return ""
	})
}

// primitive reads and parses one primitive's keys: all of them, but for a
// queue, which is counted and whose claims alone are read.
func (r *reader) primitive(sp keys.Space) (Primitive, error) {
	k := prim{sp: sp}
	var err error
	if sp.Kind() != keys.KindQueue {
		k.kvs, err = r.read(sp.Base(), keys.RangeEnd(sp.Base()))
	}
	if err != nil {
		return Primitive{}, err
	}
	return r.parse(k)
}

// build parses a primitive whose keys are read (any kind but a queue).
func (r *reader) build(k prim) Primitive {
	p, _ := r.parse(k) // only a queue's parser reads, and fails
	return p
}

func (r *reader) parse(k prim) (Primitive, error) {
	p := Primitive{Kind: k.sp.Kind(), Name: k.sp.Name(), Info: map[string]string{}}
	if parse := parsers[k.sp.Kind()]; parse != nil {
		if err := parse(r, &p, k); err != nil {
			return Primitive{}, err
		}
	}
	return p, nil
}

// read returns the keys of [from, end), with their values.
func (r *reader) read(from, end string) ([]*mvccpb.KeyValue, error) {
	var kvs []*mvccpb.KeyValue
	err := r.scan(from, end, false, func(kv *mvccpb.KeyValue) string {
		kvs = append(kvs, kv)
		return ""
	})
	return kvs, err
}

// ttl returns the time left on a lease (0 once it is gone), asking etcd
// once per lease.
func (r *reader) ttl(id int64) time.Duration {
	if d, ok := r.ttls[id]; ok {
		return d
	}
	d := time.Duration(0)
	if resp, err := r.cli.TimeToLive(r.ctx, clientv3.LeaseID(id)); err == nil && resp.TTL > 0 {
		d = time.Duration(resp.TTL) * time.Second
	}
	r.ttls[id] = d
	return d
}

// prim is one primitive's keys, as read.
type prim struct {
	sp  keys.Space
	kvs []*mvccpb.KeyValue
}

// part returns the members under one part, oldest first.
func (r *reader) part(k prim, name string) []Member {
	pre := k.sp.Part(name)
	n := 0
	for _, kv := range k.kvs {
		if strings.HasPrefix(string(kv.Key), pre) {
			n++
		}
	}
	out := make([]Member, 0, n)
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
	if kv.Lease != 0 && !r.noTTL {
		m.TTLLeft = r.ttl(kv.Lease)
	}
	if rec, err := keys.DecodeRecord(kv.Value); err == nil {
		m.Since, m.Value, m.Weight, m.Priority, m.Meta, m.Observer = rec.Since, rec.Value, rec.N, rec.Prio, rec.Meta, rec.Observer
	}
	return m
}

// single returns the value of a key that stands alone in the space.
func (k prim) single(leaf string) (string, bool) {
	if kv := k.kv(leaf); kv != nil {
		return string(kv.Value), true
	}
	return "", false
}

// kv returns a key that stands alone in the space, or nil.
func (k prim) kv(leaf string) *mvccpb.KeyValue {
	key := k.sp.Single(leaf)
	for _, kv := range k.kvs {
		if string(kv.Key) == key {
			return kv
		}
	}
	return nil
}
