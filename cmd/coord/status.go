package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func init() {
	register("status", "show who holds what, who waits, and since when", runStatus)
}

const statusHelp = `[--prefix coord/] [--kind KIND] [NAME] [-o text|json]

Shows coord's primitives in use under the root prefix (--prefix, default
coord/, the root your programs give session.WithPrefix):

  coord status                     everything in use
  coord status --kind lock         every lock in use
  coord status --kind lock backup  the lock "backup", in use or not
  coord status backup              everything named "backup", of any kind

Kinds: barrier, dbarrier, election, group, latch, lock, queue, ratelimit,
rwlock, schedule, semaphore, shard.

One row per holder and waiter, in line order, under a header: ROLE (leader
and candidates for an election, holder and waiters for a lock), the
fencing TOKEN, the OWNER's host:pid, the TTL left on its lease, AGE (how
long ago it asked; locks only), DETAIL (a candidate's value, the permits
asked for) and the etcd KEY. A row with ROLE "-" gives a primitive's own
facts: a semaphore's capacity and use, a queue's depths. Primitives whose
only keys are leftovers of their last users (a semaphore's capacity, a
barrier's released mark) are not listed unless asked for by kind and name.

With -o json: a JSON array of {kind, name, info, holders, waiters}, each
member with key, token, lease, ttl_left_seconds (-1 without a lease),
owner, value, weight and since (RFC 3339, when known).

It is a snapshot: holders may change as it prints. It reads, never writes.

Exit status: 0, also when nothing is in use; 1 when etcd cannot be reached
or read; 2 for bad usage.`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", statusHelp, stderr)
	var c connFlags
	c.register(fs)
	var root string
	registerPrefix(fs, &root)
	kind := fs.String("kind", "", "show only this kind of primitive")
	nameFlag := fs.String("name", "", "the same as the NAME argument")
	var o outputFlag
	o.register(fs)
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	name := *nameFlag
	switch {
	case len(pos) > 1:
		return usageErr(fs, stderr, "want at most one NAME, got %d arguments", len(pos))
	case len(pos) == 1 && name != "":
		return usageErr(fs, stderr, "NAME given twice (as an argument and --name)")
	case len(pos) == 1:
		name = pos[0]
	}
	if *kind != "" && !inspect.KnownKind(*kind) {
		return usageErr(fs, stderr, "unknown kind %q (kinds: %s)", *kind, strings.Join(inspect.Kinds(), ", "))
	}
	if name != "" {
		if code := checkName(fs, name); code >= 0 {
			return code
		}
	}
	if code := checkRoot(fs, root); code >= 0 {
		return code
	}
	if code := o.check(fs); code >= 0 {
		return code
	}
	if err := c.check(); err != nil {
		return usageErr(fs, stderr, "%v", err)
	}
	root, _ = keys.NormalizeRoot(root)

	cli, err := c.client()
	if err != nil {
		return fail(stderr, "status: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.dialTimeout+10*time.Second)
	defer cancel()
	ps, err := statusRead(ctx, cli, root, *kind, name)
	if err != nil {
		return fail(stderr, "status: %v", err)
	}
	if o.json() {
		return writeJSON(stdout, stderr, statusJSON(ps))
	}
	switch {
	case len(ps) == 1 && !ps[0].InUse():
		fmt.Fprintf(stdout, "%s %q: not in use under %s\n", ps[0].Kind, ps[0].Name, root)
		if len(ps[0].Info) == 0 {
			return 0
		}
	case len(ps) == 0:
		fmt.Fprintf(stdout, "nothing in use under %s\n", root)
		return 0
	}
	inspect.Render(stdout, ps)
	return 0
}

// checkRoot rejects a root that is really a kind's subtree: "coord/lock"
// as a root would make every lock's key read as a primitive of its own.
// (The library refuses such a root too; this says what to type instead.)
func checkRoot(fs *flagSet, root string) int {
	segs := strings.Split(strings.TrimSuffix(root, "/"), "/")
	if last := segs[len(segs)-1]; len(segs) > 1 && inspect.KnownKind(last) {
		return usageErr(fs, fs.stderr, "--prefix %q ends in the kind %q: the prefix is the root your programs use (%s); to see every %s, use --kind %s",
			root, last, strings.Join(segs[:len(segs)-1], "/")+"/", last, last)
	}
	return checkPrefix(fs, root)
}

func statusRead(ctx context.Context, cli *clientv3.Client, root, kind, name string) ([]inspect.Primitive, error) {
	switch {
	case kind != "" && name != "":
		p, err := inspect.Get(ctx, cli, root, kind, name)
		if err != nil {
			return nil, err
		}
		return []inspect.Primitive{p}, nil
	case name != "":
		var out []inspect.Primitive
		for _, k := range inspect.Kinds() {
			p, err := inspect.Get(ctx, cli, root, k, name)
			if err != nil {
				return nil, err
			}
			if p.InUse() {
				out = append(out, p)
			}
		}
		return out, nil
	}
	all, err := inspect.List(ctx, cli, root)
	if err != nil || kind == "" {
		return all, err
	}
	var out []inspect.Primitive
	for _, p := range all {
		if p.Kind == kind {
			out = append(out, p)
		}
	}
	return out, nil
}

// memberJSON and primitiveJSON are status -o json's shape: durations in
// seconds, times in RFC 3339, so that jq and other languages read them
// without knowing Go's encodings.
type memberJSON struct {
	Key     string     `json:"key"`
	Token   int64      `json:"token"`
	Lease   string     `json:"lease,omitempty"` // hex, as etcdctl prints leases
	TTLLeft float64    `json:"ttl_left_seconds"`
	Owner   string     `json:"owner,omitempty"`
	Value   string     `json:"value,omitempty"`
	Weight  int64      `json:"weight,omitempty"`
	Since   *time.Time `json:"since,omitempty"`
}

type primitiveJSON struct {
	Kind    string            `json:"kind"`
	Name    string            `json:"name"`
	InUse   bool              `json:"in_use"`
	Info    map[string]string `json:"info"`
	Holders []memberJSON      `json:"holders"`
	Waiters []memberJSON      `json:"waiters"`
}

func statusJSON(ps []inspect.Primitive) []primitiveJSON {
	out := []primitiveJSON{}
	conv := func(ms []inspect.Member) []memberJSON {
		r := []memberJSON{}
		for _, m := range ms {
			j := memberJSON{Key: m.Key, Token: m.Token, TTLLeft: -1, Owner: m.Owner, Value: m.Value, Weight: m.Weight}
			if m.Lease != 0 {
				j.Lease = fmt.Sprintf("%x", m.Lease)
			}
			if m.TTLLeft >= 0 {
				j.TTLLeft = m.TTLLeft.Seconds()
			}
			if !m.Since.IsZero() {
				t := m.Since.UTC()
				j.Since = &t
			}
			r = append(r, j)
		}
		return r
	}
	for _, p := range ps {
		out = append(out, primitiveJSON{Kind: p.Kind, Name: p.Name, InUse: p.InUse(), Info: p.Info, Holders: conv(p.Holders), Waiters: conv(p.Waiters)})
	}
	return out
}
