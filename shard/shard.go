package shard

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInvalid is wrapped by the errors returned for a nil membership, a
// bad map name, a set of no shards or over MaxShards, a named shard that
// is not a valid name or appears twice, a nil work function and a bad
// option value.
var ErrInvalid = errors.New("shard: invalid argument")

// ErrSpecMismatch is returned by Run when the map is stored with other
// shards, or over another group, than this Map was made with. Every
// member of a map must agree on both; delete the map's keys to change
// them.
var ErrSpecMismatch = errors.New("shard: map stored with other shards or group")

// ErrRunning is returned by Run while another Run of the same Map runs.
var ErrRunning = errors.New("shard: already running")

// ErrMoved is the cause (context.Cause) of a shard's work context when
// the shard is handed over to another member: finish up and return; the
// shard is released when work returns, and only then taken by the next
// owner.
var ErrMoved = errors.New("shard: moved to another member")

// ErrLost is wrapped, as the cause of a shard's work context and by
// Shard.Err, when the shard was taken away rather than handed over: the
// session ended (then session.ErrExpired is wrapped too) or its owner key
// was deleted.
var ErrLost = errors.New("shard: ownership lost")

// ErrNoOwner is returned by Owner while a shard has no owner: between a
// handoff's release and the next owner's acquisition, or before any
// member runs the map.
var ErrNoOwner = errors.New("shard: no owner")

// ErrUnknownShard is returned by Owner for a shard the map does not
// have.
var ErrUnknownShard = errors.New("shard: no such shard")

// errReleased is the lifecycle's NotHeld sentinel: never returned, since
// the map releases each shard once.
var errReleased = errors.New("shard: released")

const (
	kind = keys.KindShard
	// MaxShards bounds the number of shards of a map.
	MaxShards = 4096
	// maxSpecBytes bounds the stored list of named shards.
	maxSpecBytes = 256 << 10
	// cleanupTimeout bounds a release after the work returned.
	cleanupTimeout = 5 * time.Second
)

// Set is the shards of a map: numbered (Count) or named (Named).
type Set struct {
	n     int
	names []string
}

// Count is a set of n numbered shards, named "0" to "n-1".
func Count(n int) Set { return Set{n: n} }

// Named is a set of shards with the given names (tenants, streams, key
// ranges), each a valid coord name.
func Named(names ...string) Set { return Set{n: -1, names: append([]string(nil), names...)} }

// shardNames validates the set and returns its shards' names.
func (s Set) shardNames() ([]string, error) {
	if s.n >= 0 && s.names == nil {
		if s.n < 1 || s.n > MaxShards {
			return nil, fmt.Errorf("%w: %d shards; want 1 to %d", ErrInvalid, s.n, MaxShards)
		}
		out := make([]string, s.n)
		for i := range out {
			out[i] = strconv.Itoa(i)
		}
		return out, nil
	}
	if len(s.names) < 1 || len(s.names) > MaxShards {
		return nil, fmt.Errorf("%w: %d named shards; want 1 to %d", ErrInvalid, len(s.names), MaxShards)
	}
	seen := make(map[string]bool, len(s.names))
	size := 0
	for _, n := range s.names {
		if err := keys.ValidateName(n); err != nil {
			return nil, fmt.Errorf("%w: shard: %w", ErrInvalid, err)
		}
		if seen[n] {
			return nil, fmt.Errorf("%w: shard %q named twice", ErrInvalid, n)
		}
		seen[n] = true
		size += len(n) + 3
	}
	if size > maxSpecBytes {
		return nil, fmt.Errorf("%w: the shards' names take %d bytes, over the %d-byte limit", ErrInvalid, size, maxSpecBytes)
	}
	return s.names, nil
}

// Option configures New.
type Option func(*options)

type options struct {
	inFlight int
	restart  time.Duration
	settle   time.Duration
	root     string
	err      error
}

// WithAcquireConcurrency sets how many shards a member acquires at once
// (default 8): a member that finds many shards without an owner (the
// first to start, or the survivors of a crash) takes them in parallel.
func WithAcquireConcurrency(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.err = fmt.Errorf("%w: acquire concurrency %d; want at least 1", ErrInvalid, n)
		}
		o.inFlight = n
	}
}

// WithRestartDelay sets how long a member waits before calling work
// again for a shard it still owns after work returned on its own (default
// 1 s).
func WithRestartDelay(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.err = fmt.Errorf("%w: restart delay %v is negative", ErrInvalid, d)
		}
		o.restart = d
	}
}

// WithSettle makes a member hand over shards for balance only once the
// map's members have not changed for d (default 0: at once), so a member
// that joins and leaves again within d moves nothing. Shards with no
// owner (their owner crashed or left) are taken at once regardless.
func WithSettle(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.err = fmt.Errorf("%w: settle %v is negative", ErrInvalid, d)
		}
		o.settle = d
	}
}

// Map is a named set of shards spread over the live members of a group
// that run it, with this process as one of them (Run). It is safe for
// concurrent use, with one Run at a time.
//
// Keys, under <root>shard/<name>/: "spec", the map's shards and group,
// written by the first member to run it; one participant key per running
// member, p/<id>, on its session's lease; and one owner key per owned
// shard, o/<escaped shard>, on the owner's lease, whose create revision
// is the ownership's fencing token.
type Map struct {
	mem   *group.Membership
	s     *lease.Session
	hub   *watch.Hub
	sp    keys.Space
	gname string
	names []string
	// numbered: the shards are Count's "0" to "n-1".
	numbered  bool
	hashes    []uint64
	okeys     []string // owner keys, by shard index
	okeyIndex map[string]int
	index     map[string]int
	opts      options
	logger    *slog.Logger
	err       error

	mu      sync.Mutex
	running bool
}

// New returns the shard map called name, spreading shards over the group
// that m is a member of, with this process taking part as m. It talks to
// etcd only when used. Bad arguments are reported, wrapping ErrInvalid,
// by Run and Owner.
func New(m *group.Membership, name string, shards Set, opts ...Option) *Map {
	o := options{inFlight: 8, restart: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	mp := &Map{mem: m, opts: o, logger: slog.New(slog.DiscardHandler)}
	if m == nil {
		mp.err = fmt.Errorf("%w: nil membership", ErrInvalid)
		return mp
	}
	mp.s = lease.Of(m.Session())
	mp.logger = mp.s.Logger()
	sp, err := keys.New(mp.s.Root(), kind, name)
	if err != nil {
		mp.err = fmt.Errorf("%w: %w", ErrInvalid, err)
		return mp
	}
	mp.sp, mp.gname, mp.hub = sp, m.Group().Name(), watch.For(mp.s.Client())
	if o.err != nil {
		mp.err = fmt.Errorf("shard map %q: %w", name, o.err)
		return mp
	}
	if mp.names, err = shards.shardNames(); err != nil {
		mp.err = fmt.Errorf("shard map %q: %w", name, err)
		return mp
	}
	mp.numbered = shards.n >= 0
	mp.hashes, mp.index = hashesOf(mp.names)
	mp.okeys = ownerKeys(sp, mp.names)
	mp.okeyIndex = make(map[string]int, len(mp.okeys))
	for i, k := range mp.okeys {
		mp.okeyIndex[k] = i
	}
	return mp
}

func hashesOf(names []string) ([]uint64, map[string]int) {
	hs := make([]uint64, len(names))
	idx := make(map[string]int, len(names))
	for i, n := range names {
		hs[i], idx[n] = hashString(n), i
	}
	return hs, idx
}

// Name returns the map's name.
func (mp *Map) Name() string { return mp.sp.Name() }

// Shard is one shard this member owns, from its acquisition until it is
// released or lost. Its work runs with a context that ends first.
type Shard struct {
	name  string
	index int
	h     *hold.Hold
}

// Name returns the shard's name ("17" in a map of Count shards).
func (sh *Shard) Name() string { return sh.name }

// Index returns the shard's position in its map: its number in a map of
// Count shards, its place in the list given to Named otherwise.
func (sh *Shard) Index() int { return sh.index }

// Key returns the etcd key of the shard's ownership.
func (sh *Shard) Key() string { return sh.h.Key() }

// Token returns the ownership's fencing token: the create revision of its
// owner key, strictly increasing across the owners of one shard. Pass it
// to what the shard's work writes, which can reject writes with an older
// token than one it has seen.
func (sh *Shard) Token() int64 { return sh.h.Rev() }

// IsOwner returns a comparison that holds while this ownership does, to
// guard your own Txns.
func (sh *Shard) IsOwner() clientv3.Cmp { return sh.h.IsOwner()[0] }

// Done returns a channel closed when the ownership ends: released after
// a handoff or Run's end, or lost.
func (sh *Shard) Done() <-chan struct{} { return sh.h.Done() }

// Err returns an error wrapping ErrLost once the ownership was lost, and
// nil otherwise (while it is owned, and after a clean release).
func (sh *Shard) Err() error { return sh.h.Lost() }
