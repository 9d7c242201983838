package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type mode int

const (
	modeAny mode = iota
	modeRead
	modeWrite
)

// entry is one key a lock request puts, and the parts of its space (the
// lines) in which no key may be older than it before the lock is held.
type entry struct {
	sp    keys.Space
	part  string   // where the key goes: "w" or "r"
	lines []string // parts that must hold no older key
}

// limit is how many keys of line l the uncontended read asks for: the
// caller is alone in its own part when it sees only its own key, and in
// another part when it sees none.
func (e entry) limit(l string) int64 {
	if l == e.part {
		return 2
	}
	return 1
}

// core is what Mutex, RWMutex and MultiMutex keep of their own: which
// keys a request puts and which lines it must be first in. Everything
// about a key's life (creating it, confirming the grant, Done, release,
// cleanup after a failure) is the shared lifecycle's (internal/hold), and
// waiting is the process's shared mirror of each line (internal/watch).
type core struct {
	s     *lease.Session
	hub   *watch.Hub
	kind  string
	names []string
	label string // `lock "a"`, for errors and logs
	guard string // a key no lock ever creates, for IsOwner when not held
	err   error  // from construction; returned by every call
	cfg   hold.Config
	idle  chan struct{} // closed: the Done of a value that holds nothing

	mu    sync.Mutex
	busy  bool   // a lock is being taken or is held
	cur   *acq   // the lock held (or lost and not yet unlocked), or nil
	spare string // an id whose key this value deleted itself, free to reuse
}

// acq is one acquisition.
type acq struct {
	h    *hold.Hold
	mode mode
}

func newCore(s *session.Session, kind string, names []string) *core {
	c := &core{kind: kind, names: names, guard: "coord/" + kind + "/", idle: make(chan struct{})}
	close(c.idle)
	if len(names) == 1 {
		c.label = fmt.Sprintf("%s %q", kind, names[0])
	} else {
		c.label = fmt.Sprintf("%s %q", kind, names)
	}
	if s == nil {
		c.err = fmt.Errorf("%s: %w", c.label, errNilSession)
		return c
	}
	c.s = lease.Of(s)
	c.hub = watch.For(c.s.Client())
	c.guard = c.s.Root() + kind + "/"
	c.cfg = hold.Config{Kind: kind, Names: names, Label: c.label, Errors: hold.Errors{Lost: ErrLost, NotHeld: ErrNotHeld}}
	return c
}

// nextID returns the id for the next acquisition's key. After a clean
// Unlock it reuses the id just released: etcd keeps a deleted key in its
// index until the next compaction, and every read of the line walks past
// those tombstones, so a fresh key per Lock would make a busy lock slower
// until etcd compacts. Reuse is safe because only this value ever uses the
// id, one acquisition at a time, and its Unlock deleted the key itself;
// after any failure (a cleanup that may still run in the background) the
// id is never reused.
func (c *core) nextID() string {
	c.mu.Lock()
	id := c.spare
	c.spare = ""
	c.mu.Unlock()
	if id == "" {
		id = c.s.NextID()
	}
	return id
}

// acquire takes the lock in mode m by putting entries, waiting for it
// unless try is set; traced, the call is a wait span and the hold a hold
// span (see trace.go).
func (c *core) acquire(ctx context.Context, m mode, id string, entries []entry, try bool) error {
	if c.err != nil {
		return c.err
	}
	wctx, sp := c.startWait(ctx, m)
	a, err := c.acquireOnce(wctx, m, id, entries, try)
	c.endWait(ctx, wctx, sp, m, a, err)
	return err
}

func (c *core) acquireOnce(ctx context.Context, m mode, id string, entries []entry, try bool) (*acq, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.label, err)
	}
	if err := c.s.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.label, err)
	}
	c.mu.Lock()
	if c.busy && c.cur != nil && c.cur.h.Lost() != nil {
		// The lock held was lost: it no longer blocks a new Lock, and its
		// loss was reported through Done (and is by Unlock, if called).
		c.cur, c.busy = nil, false
	}
	if c.busy {
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", c.label, ErrHeld)
	}
	c.busy = true
	c.mu.Unlock()

	a, err := c.take(ctx, m, id, entries, try)

	c.mu.Lock()
	c.cur = a
	c.busy = err == nil
	c.mu.Unlock()
	return a, err
}

// take runs one acquisition: one Txn that puts every key and reads, per
// line, just enough of it (in key order, so etcd honours the limit) to
// tell whether the caller is alone there; then, if it is not, a wait in
// the process's mirror of each occupied line.
func (c *core) take(ctx context.Context, m mode, id string, entries []entry, try bool) (*acq, error) {
	ks := make([]hold.Key, len(entries))
	// When the process already follows every name (a waiter or holder of
	// it lately), its mirror tells whether the caller is first, and the
	// Txn reads nothing: etcd visits every key of a range it reads, so
	// the read costs the server the whole line, however small its limit.
	// A TryLock reads, so that it never waits.
	warm := !try
	for _, e := range entries {
		warm = warm && c.hub.Warm(e.sp.Base())
	}
	var reads []clientv3.Op
	for i, e := range entries {
		ks[i] = hold.Key{Key: e.sp.Key(e.part, id), Watch: watch.MirrorOf{Hub: c.hub, Base: e.sp.Base()}}
		for _, l := range e.lines {
			if warm {
				continue
			}
			p := e.sp.Part(l)
			reads = append(reads, clientv3.OpGet(p, clientv3.WithRange(keys.RangeEnd(p)), clientv3.WithLimit(e.limit(l)), clientv3.WithKeysOnly()))
		}
	}
	h := hold.New(c.s, &c.cfg, keys.Record{}, ks...)
	created, err := h.Create(ctx, hold.Spec{Then: reads})
	if err != nil {
		h.Abandon(ctx)
		return nil, err
	}
	alone := !created.Existed && !warm
	if alone {
		i := 0
		for _, e := range entries {
			for _, l := range e.lines {
				r := created.Then[i].GetResponseRange()
				if r.More || int64(len(r.Kvs)) != e.limit(l)-1 {
					alone = false
				}
				i++
			}
		}
	}
	switch {
	case alone:
	case try:
		h.Abandon(ctx)
		return nil, fmt.Errorf("%s: %w", c.label, ErrLocked)
	default:
		if err := c.wait(ctx, h, entries); err != nil {
			h.Abandon(ctx)
			return nil, err
		}
	}
	admit := h.Admit
	if try {
		admit = h.TryAdmit
	}
	if err := admit(ctx); err != nil {
		h.Abandon(ctx)
		if errors.Is(err, hold.ErrDelayed) {
			return nil, fmt.Errorf("%s: %w: a lock-delay is pending", c.label, ErrLocked)
		}
		return nil, err
	}
	return &acq{h: h, mode: m}, nil
}

// wait blocks until the caller is first in every line, through the
// process's mirror of each name's keys: a handoff is the holder's delete
// and one watch event, with no read. Lines are waited for one name after
// another: keys older than the caller's only ever go away, so a line
// found clear stays clear.
func (c *core) wait(ctx context.Context, h *hold.Hold, entries []entry) error {
	ctx, cancel := c.s.Bound(ctx) // ends with the session too
	defer cancel()
	rev := h.Rev()
	for i, e := range entries {
		mir := c.hub.Mirror(e.sp.Base())
		wl := mir.Waitlist("first", watch.First)
		err := wl.Wait(ctx, &watch.Waiter{Key: h.Keys()[i], Rev: rev, Arg: e.lines})
		mir.Release()
		if err != nil {
			return c.waitErr(ctx, h, err)
		}
	}
	return nil
}

// waitErr explains why a wait ended: the session's end first (the cause
// users test for), then a deleted key, then ctx.
func (c *core) waitErr(ctx context.Context, h *hold.Hold, err error) error {
	if errors.Is(err, watch.ErrGone) {
		c.s.Verify(context.WithoutCancel(ctx))
	}
	if serr := c.s.Err(); serr != nil {
		if errors.Is(err, watch.ErrGone) {
			return fmt.Errorf("%s: %w: %w", c.label, ErrLost, serr)
		}
		return fmt.Errorf("%s: %w", c.label, serr)
	}
	if errors.Is(err, watch.ErrGone) {
		return fmt.Errorf("%s: %w: %w: %s", c.label, ErrLost, err, h.Key())
	}
	return fmt.Errorf("%s: %w", c.label, err)
}

// release unlocks a lock held in mode m (modeAny: whatever is held).
func (c *core) release(ctx context.Context, m mode) error {
	if c.err != nil {
		return c.err
	}
	c.mu.Lock()
	a := c.cur
	c.mu.Unlock()
	if a == nil || (m != modeAny && a.mode != m) {
		return fmt.Errorf("%s: %w", c.label, ErrNotHeld)
	}
	_, err := a.h.Release(ctx)
	if err != nil && !errors.Is(err, ErrLost) {
		return err // still held as far as we know: the caller may retry
	}
	c.mu.Lock()
	if c.cur == a {
		c.cur, c.busy = nil, false
	}
	if err == nil && len(a.h.Keys()) == 1 {
		k := a.h.Key()
		c.spare = k[strings.LastIndexByte(k, '/')+1:]
	}
	c.mu.Unlock()
	return err
}

// current returns the acquisition held and not lost, or nil.
func (c *core) current() *acq {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil && c.cur.h.Held() {
		return c.cur
	}
	return nil
}

func (c *core) token() int64 {
	if a := c.current(); a != nil {
		return a.h.Rev()
	}
	return 0
}

func (c *core) key() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != nil {
		return c.cur.h.Key()
	}
	return ""
}

func (c *core) done() <-chan struct{} {
	c.mu.Lock()
	a := c.cur
	c.mu.Unlock()
	if a == nil {
		return c.idle
	}
	return a.h.Done()
}

// owner returns one Cmp per key held; when nothing is held, one Cmp that
// is never true (no key has a negative create revision).
func (c *core) owner() []clientv3.Cmp {
	if a := c.current(); a != nil {
		return a.h.IsOwner()
	}
	return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(c.guard), "<", 0)}
}
