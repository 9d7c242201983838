package lock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// cleanupTimeout bounds the deletes that run after the caller's context
// is gone: a cancelled or failed Lock, Do's Unlock.
const cleanupTimeout = 5 * time.Second

type mode int

const (
	modeAny mode = iota
	modeRead
	modeWrite
)

// entry is one key a lock request puts, and the lines (key prefixes) in
// which no key may be older than it before the lock is held.
type entry struct {
	key   string
	lines []string
}

// core is what Mutex, RWMutex and MultiMutex share: taking a set of keys
// in one Txn, waiting to be first in every line, and holding them.
type core struct {
	s     *session.Session
	kind  string
	names []string
	label string // `lock "a"`, for errors and logs
	guard string // a key no lock ever creates, for IsOwner when not held
	err   error  // from construction; returned by every call

	mu    sync.Mutex
	busy  bool   // a lock is being taken or is held
	cur   *acq   // the lock held, or nil
	spare string // an id whose key this value deleted itself, free to reuse
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

func newCore(s *session.Session, kind string, names []string) *core {
	c := &core{s: s, kind: kind, names: names, guard: "coord/" + kind + "/"}
	if len(names) == 1 {
		c.label = fmt.Sprintf("%s %q", kind, names[0])
	} else {
		c.label = fmt.Sprintf("%s %q", kind, names)
	}
	if s == nil {
		c.err = fmt.Errorf("%s: %w", c.label, errNilSession)
		return c
	}
	c.guard = s.Prefix() + kind + "/"
	return c
}

// fail wraps err for the caller, turning the waiting core's ErrKeyGone
// into ErrLost.
func (c *core) fail(err error) error {
	if errors.Is(err, wait.ErrKeyGone) {
		return fmt.Errorf("%s: %w: %v", c.label, ErrLost, err)
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease went before the session noticed: the same loss.
		return fmt.Errorf("%s: %w: %v", c.label, session.ErrExpired, err)
	}
	return fmt.Errorf("%s: %w", c.label, err)
}

// acquire takes the lock in mode m by putting entries, waiting for it
// unless try is set.
func (c *core) acquire(ctx context.Context, m mode, entries []entry, try bool) error {
	if c.err != nil {
		return c.err
	}
	if err := ctx.Err(); err != nil {
		return c.fail(err)
	}
	if err := c.s.Err(); err != nil {
		return c.fail(err)
	}
	c.mu.Lock()
	if c.busy {
		c.mu.Unlock()
		return fmt.Errorf("%s: %w", c.label, ErrHeld)
	}
	c.busy = true
	c.mu.Unlock()

	a, err := c.take(ctx, m, entries, try)

	c.mu.Lock()
	c.cur = a
	c.busy = err == nil
	c.mu.Unlock()
	return err
}

// take runs the acquisition: one Txn that queues every key (or, for try,
// takes the lock only if every line is empty), then one NoneBefore per
// line the Txn found occupied.
func (c *core) take(ctx context.Context, m mode, entries []entry, try bool) (*acq, error) {
	start := time.Now()
	a := &acq{c: c, mode: m, done: make(chan struct{})}
	for _, e := range entries {
		a.keys = append(a.keys, e.key)
	}
	q, err := c.enqueue(ctx, entries, try)
	if err != nil {
		if !errors.Is(err, ErrLocked) {
			// The Txn may have been applied before the error: the keys
			// are unique to this call, so deleting them is always safe.
			c.cleanup(ctx, a)
		}
		return nil, err
	}
	a.rev = q.rev
	if len(q.waits) > 0 {
		if err := c.wait(ctx, a, q); err != nil {
			c.cleanup(ctx, a)
			return nil, err
		}
	}
	// The answer that made us holder may have been held up in the network
	// past the moment our lease could still be trusted (a partition that
	// healed late delivers it all the same): never report a hold the
	// session cannot vouch for now.
	if err := c.s.Err(); err != nil {
		c.cleanup(ctx, a)
		return nil, c.fail(err)
	}
	now := time.Now()
	a.start = now
	a.mu.Lock()
	a.held = true
	a.mu.Unlock()
	for _, n := range c.names {
		c.s.Metrics().Acquired(c.kind, n, now.Sub(start))
	}
	c.s.Logger().Debug("coord lock acquired", "lock", c.label, "token", a.rev, "waited", now.Sub(start))
	return a, nil
}

// queued is where an enqueue left the caller: its revision, the revision
// of the read that found its predecessors, and the lines to wait in.
type queued struct {
	rev, since int64
	waits      []wait.Queue
	preds      []string
}

func rangeOf(line string) clientv3.OpOption { return clientv3.WithRange(keys.RangeEnd(line)) }

// enqueue puts every key in one Txn. For Lock, the same Txn reads the two
// newest keys of each line: at that revision the caller's own key is the
// newest, so the other one, if any, is its immediate predecessor, and the
// uncontended lock costs this one Txn. For TryLock, the Txn puts the keys
// only if every line is empty, so a failed try leaves nothing to delete.
//
// The first key's create revision guards the Txn, so a retry after an
// ambiguous failure finds the keys an earlier attempt put, never puts
// them twice.
func (c *core) enqueue(ctx context.Context, entries []entry, try bool) (queued, error) {
	cli := c.s.Client()
	first := entries[0].key
	var puts, gets []clientv3.Op
	var cmps []clientv3.Cmp
	var pairs []pair
	seen := map[string]bool{}
	// The value records when the request was made, for operators reading
	// the keys (`coord status`, etcdctl): "waiting since", "queued at".
	since := time.Now().UTC().Format(time.RFC3339Nano)
	for _, e := range entries {
		puts = append(puts, c.s.PutOwn(e.key, since))
		for _, l := range e.lines {
			pairs = append(pairs, pair{e.key, l})
			gets = append(gets, clientv3.OpGet(l, rangeOf(l),
				clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
				clientv3.WithLimit(2), clientv3.WithKeysOnly()))
			if !seen[l] {
				seen[l] = true
				// On an empty range etcd compares against a zero key, so
				// this holds exactly when the line has no key at all.
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l), "=", 0).WithRange(keys.RangeEnd(l)))
			}
		}
	}
	backoff := 10 * time.Millisecond
	for {
		var txn clientv3.Txn
		if try {
			txn = cli.Txn(ctx).If(cmps...).Then(puts...).Else(clientv3.OpGet(first))
		} else {
			txn = cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(first), "=", 0)).
				Then(append(puts[:len(puts):len(puts)], gets...)...).Else(clientv3.OpGet(first))
		}
		resp, err := txn.Commit()
		if err != nil {
			if wait.Transient(err) && ctx.Err() == nil && c.s.Err() == nil {
				sleep(ctx, backoff)
				backoff = min(2*backoff, 500*time.Millisecond)
				continue
			}
			if serr := c.s.Err(); serr != nil {
				err = serr
			}
			return queued{}, c.fail(err)
		}
		if resp.Succeeded {
			q := queued{rev: resp.Header.Revision, since: resp.Header.Revision}
			if try {
				return q, nil
			}
			for i, p := range pairs {
				for _, kv := range resp.Responses[len(puts)+i].GetResponseRange().Kvs {
					if kv.CreateRevision < q.rev {
						q.waits = append(q.waits, wait.Queue{Prefix: p.line, Own: p.key, Rev: q.rev})
						q.preds = append(q.preds, string(kv.Key))
						break
					}
				}
			}
			return q, nil
		}
		own := resp.Responses[0].GetResponseRange().Kvs
		if try {
			if len(own) == 0 {
				return queued{}, fmt.Errorf("%s: %w", c.label, ErrLocked)
			}
			// An earlier attempt took the lock; its reply was lost.
			return queued{rev: own[0].CreateRevision, since: resp.Header.Revision}, nil
		}
		if len(own) == 0 {
			// Deleted between the compare and the read: only someone
			// else can have done that.
			return queued{}, fmt.Errorf("%s: %w: key %s deleted while queueing", c.label, ErrLost, first)
		}
		// An earlier attempt queued the keys; find their predecessors now.
		return c.findPreds(ctx, own[0].CreateRevision, pairsToQueues(pairs, own[0].CreateRevision))
	}
}

// pair is one key in one line it must be first in.
type pair struct{ key, line string }

func pairsToQueues(pairs []pair, rev int64) []wait.Queue {
	out := make([]wait.Queue, len(pairs))
	for i, p := range pairs {
		out[i] = wait.Queue{Prefix: p.line, Own: p.key, Rev: rev}
	}
	return out
}

// findPreds reads the predecessor in every line at one revision. Only the
// rare retry after an ambiguous Txn needs it.
func (c *core) findPreds(ctx context.Context, rev int64, qs []wait.Queue) (queued, error) {
	ops := make([]clientv3.Op, len(qs))
	for i, q := range qs {
		ops[i] = q.Predecessor()
	}
	resp, err := c.s.Client().Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return queued{}, c.fail(err)
	}
	out := queued{rev: rev, since: resp.Header.Revision}
	for i, q := range qs {
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			out.waits = append(out.waits, q)
			out.preds = append(out.preds, string(kvs[0].Key))
		}
	}
	return out, nil
}

// wait blocks until the caller is first in every line it found occupied.
// Lines are waited for one after another: keys older than the caller's
// only ever go away, so a line found empty stays empty.
func (c *core) wait(ctx context.Context, a *acq, q queued) error {
	stops := []wait.Stopper{c.s}
	for _, h := range a.watch() {
		stops = append(stops, h)
	}
	for _, n := range c.names {
		c.s.Metrics().Waiting(c.kind, n, 1)
	}
	defer func() {
		for _, n := range c.names {
			c.s.Metrics().Waiting(c.kind, n, -1)
		}
	}()
	for i, wq := range q.waits {
		if err := wait.NoneBefore(ctx, c.s.Client(), wq, q.preds[i], q.since, stops...); err != nil {
			return c.fail(err)
		}
	}
	// The last read saw every key alive; a hold that ended since then
	// means the lock is already gone, so do not report it as taken.
	for _, h := range stops[1:] {
		if err := h.Err(); err != nil {
			return c.fail(err)
		}
	}
	return nil
}

// cleanup deletes the keys of a request that failed or was cancelled.
// Session.Retire tries at once within its own timeout, even after the
// caller's context ended, and if etcd is unreachable keeps trying in the
// background until it can or the session ends, so a failed waiter never
// blocks the line for longer than etcd itself is down.
func (c *core) cleanup(ctx context.Context, a *acq) {
	a.finish()
	if err := c.s.Retire(ctx, a.keys...); err != nil {
		c.s.Logger().Debug("coord lock cleanup deferred", "lock", c.label, "err", err)
	}
}

// remove deletes keys: a single key with one DeleteRange, several in one
// Txn. The keys are unique to one acquisition, so this can never delete
// anyone else's lock, however late or often it runs. It returns how many
// keys were still there.
func (c *core) remove(ctx context.Context, ks []string) (int64, error) {
	cli := c.s.Client()
	backoff := 10 * time.Millisecond
	for {
		var n int64
		var err error
		if len(ks) == 1 {
			var resp *clientv3.DeleteResponse
			if resp, err = cli.Delete(ctx, ks[0]); err == nil {
				n = resp.Deleted
			}
		} else {
			ops := make([]clientv3.Op, len(ks))
			for i, k := range ks {
				ops[i] = clientv3.OpDelete(k)
			}
			var resp *clientv3.TxnResponse
			if resp, err = cli.Txn(ctx).Then(ops...).Commit(); err == nil {
				for _, r := range resp.Responses {
					n += r.GetResponseDeleteRange().Deleted
				}
			}
		}
		if err == nil || !wait.Transient(err) || ctx.Err() != nil {
			return n, err
		}
		sleep(ctx, backoff)
		backoff = min(2*backoff, 500*time.Millisecond)
	}
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
	a.mu.Lock()
	retry := a.unlockSent
	a.unlockSent = true
	a.mu.Unlock()
	n, err := c.remove(ctx, a.keys)
	if err != nil {
		// Still held as far as we know: the caller may retry.
		return c.fail(err)
	}
	// A retry that finds the keys gone cannot tell its own earlier
	// attempt from a loss; give it the benefit of the doubt.
	lost := n < int64(len(a.keys)) && !retry
	c.mu.Lock()
	if c.cur == a {
		c.cur, c.busy = nil, false
	}
	if len(a.keys) == 1 && n == 1 && !retry {
		c.spare = a.keys[0][strings.LastIndexByte(a.keys[0], '/')+1:]
	}
	c.mu.Unlock()
	var cause error
	if lost {
		cause = a.lossCause()
	}
	a.finish()
	held := time.Since(a.start)
	if a.report() {
		for _, nm := range c.names {
			c.s.Metrics().Released(c.kind, nm, held, lost)
		}
	}
	if lost {
		return fmt.Errorf("%s: %w before Unlock: %w", c.label, ErrLost, cause)
	}
	c.s.Logger().Debug("coord lock released", "lock", c.label, "token", a.rev, "held", held)
	return nil
}

func (c *core) current() *acq {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

func (c *core) token() int64 {
	if a := c.current(); a != nil {
		return a.rev
	}
	return 0
}

func (c *core) key() string {
	if a := c.current(); a != nil && len(a.keys) > 0 {
		return a.keys[0]
	}
	return ""
}

func (c *core) done() <-chan struct{} {
	a := c.current()
	if a == nil {
		return closed
	}
	a.watch()
	return a.done
}

// owner returns one Cmp per key held; when nothing is held, one Cmp that
// is never true (no key has a negative create revision).
func (c *core) owner() []clientv3.Cmp {
	a := c.current()
	if a == nil {
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(c.guard), "<", 0)}
	}
	out := make([]clientv3.Cmp, len(a.keys))
	for i, k := range a.keys {
		out[i] = clientv3.Compare(clientv3.CreateRevision(k), "=", a.rev)
	}
	return out
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
