package console

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/queue"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// coalesce is how long the cache gathers events before it re-reads what
// they touched: a burst of changes (a queue draining, a line handing off)
// costs one read of each primitive it touched, and viewers are told once.
// With the read itself it keeps a change on the page well within a
// second.
const coalesce = 100 * time.Millisecond

// maxDirty is how many primitives a round re-reads one by one; a round
// that touched more reads the whole root instead, which is then cheaper.
const maxDirty = 64

// pageKeys is how many keys of a primitive count as one page of reading
// it (inspect reads 512 keys a Range).
const pageKeys = 512

// id names one primitive.
type id struct{ kind, name string }

// item is what the cache knows of one primitive in use.
type item struct {
	p    inspect.Primitive
	dead []queue.DeadLetter // a queue's first dead letters (at most rows)
	derr error              // why they could not be read
	read time.Time          // when p was read
}

// due is when a primitive read at it.read may be read again: a page of
// keys per gathering window, so a primitive of many keys (a lock with
// thousands in line) changing all the time costs at most one page read
// per 100 ms, and a small one is read after every window.
func (it *item) due() time.Time {
	pages := (len(it.p.Holders)+len(it.p.Waiters))/pageKeys + 1
	return it.read.Add(time.Duration(pages) * coalesce)
}

// snapshot is the cache's state, shared read-only by every render.
type snapshot struct {
	version uint64 // changes with every refresh that changed something
	at      time.Time
	items   []*item // sorted by kind, then name
	err     error   // why the state may be stale, or nil
}

// cache is the console's copy of the root: fed by one watch of the whole
// root (the process's feed of it, shared through the watch hub), and
// refreshed by re-reading only the primitives a change touched. Every
// page render and every viewer reads it, never etcd.
type cache struct {
	cli  *clientv3.Client
	root string
	rows int
	log  *slog.Logger

	once sync.Once
	stop context.CancelFunc
	done chan struct{}

	mu      sync.Mutex
	items   map[id]*item
	snap    *snapshot
	changed chan struct{} // closed and replaced after every new snapshot
	ready   bool          // the first full read is done
}

func newCache(cli *clientv3.Client, o options) *cache {
	return &cache{cli: cli, root: o.root, rows: o.rows, log: o.log, items: map[id]*item{},
		snap: &snapshot{}, changed: make(chan struct{}), done: make(chan struct{})}
}

// start follows the root from the first viewer on, until close.
func (c *cache) start() {
	c.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		c.stop = cancel
		go c.run(ctx)
	})
}

func (c *cache) close() {
	c.once.Do(func() { close(c.done) }) // never started
	c.mu.Lock()
	stop := c.stop
	c.mu.Unlock()
	if stop != nil {
		stop()
		<-c.done
	}
}

// current returns the latest snapshot and a channel closed when a newer
// one exists.
func (c *cache) current() (*snapshot, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap, c.changed
}

// wait returns the first snapshot, once the first read of the root is
// done (or failed), or nil when ctx ends first.
func (c *cache) wait(ctx context.Context) *snapshot {
	for {
		c.mu.Lock()
		snap, ch, ready := c.snap, c.changed, c.ready
		c.mu.Unlock()
		if ready || snap.err != nil {
			return snap
		}
		select {
		case <-ch:
		case <-c.done:
			return &snapshot{version: snap.version, err: errClosed}
		case <-ctx.Done():
			return nil
		}
	}
}

// errClosed is what the page of a closed console says.
var errClosed = errors.New("console: closed")

func (c *cache) run(ctx context.Context) {
	defer close(c.done)
	hub := watch.For(c.cli)
	for {
		feed := hub.Feed(c.root, keys.RangeEnd(c.root))
		err := c.follow(ctx, feed)
		feed.Release()
		if ctx.Err() != nil {
			return
		}
		c.publish(err)
		if etcderr.Closed(c.cli) {
			return
		}
		if !pause(ctx, time.Second) {
			return
		}
	}
}

// follow keeps the cache current from feed's events until the feed ends
// (its error) or ctx does (nil).
func (c *cache) follow(ctx context.Context, feed *watch.Feed) error {
	sub := feed.Subscribe(0) // knows nothing: the first Take says to read the root
	defer sub.Close()
	full, dirty := false, map[id]bool{} // dirty: true when its dead letters changed too
	take := func() error {
		evs, resync, err := sub.Take()
		if err != nil {
			return err
		}
		full = full || resync
		for _, ev := range evs {
			c.mark(dirty, string(ev.Kv.Key))
		}
		return nil
	}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.C():
		case <-retry:
		}
		retry = nil
		if err := take(); err != nil {
			return err
		}
		if !full && len(dirty) == 0 {
			continue
		}
		// Gather the rest of the burst.
		t := time.NewTimer(coalesce)
	gather:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-sub.C():
				if err := take(); err != nil {
					t.Stop()
					return err
				}
			case <-t.C:
				break gather
			}
		}
		next, err := c.refresh(ctx, full || len(dirty) > maxDirty, dirty)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if etcderr.Refused(err) || etcderr.Closed(c.cli) {
				return err
			}
			// Read again in a while; what is marked stays marked.
			c.log.Warn("console: read failed", "root", c.root, "err", err)
			c.publish(err)
			retry = time.After(time.Second)
			continue
		}
		full = false
		if len(dirty) > 0 {
			// Big primitives not due yet: read them when they are.
			retry = time.After(time.Until(next))
		}
	}
}

// mark notes the primitive a changed key belongs to; keys of no primitive
// (sessions' markers, what is not coord's) mark nothing.
func (c *cache) mark(dirty map[id]bool, key string) {
	kind, rest, ok := strings.Cut(strings.TrimPrefix(key, c.root), "/")
	if !ok || !inspect.KnownKind(kind) {
		return
	}
	esc, part, _ := strings.Cut(rest, "/")
	name, err := keys.Unescape(esc)
	if err != nil {
		return
	}
	k := id{kind, name}
	dirty[k] = dirty[k] || (kind == keys.KindQueue && strings.HasPrefix(part, "d/"))
}

// refresh re-reads the whole root (full) or the dirty primitives that are
// due, publishes a new snapshot, and takes what it read out of dirty;
// what is left is not due before next.
func (c *cache) refresh(ctx context.Context, full bool, dirty map[id]bool) (next time.Time, err error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c.mu.Lock()
	old := c.items
	c.mu.Unlock()
	now := time.Now()
	fresh := map[id]*item{}
	if full {
		ps, err := inspect.List(rctx, c.cli, c.root, inspect.WithoutTTL())
		if err != nil {
			return next, err
		}
		for _, p := range ps {
			k := id{p.Kind, p.Name}
			fresh[k] = &item{p: p, read: now}
			dirty[k] = true
		}
	} else {
		for k := range dirty {
			if prev := old[k]; prev != nil && prev.due().After(now) {
				if next.IsZero() || prev.due().Before(next) {
					next = prev.due()
				}
				continue
			}
			p, err := inspect.Get(rctx, c.cli, c.root, k.kind, k.name, inspect.WithoutTTL())
			if err != nil {
				return next, err
			}
			if p.InUse() {
				fresh[k] = &item{p: p, read: now}
			} else {
				fresh[k] = nil
			}
		}
	}
	// A queue's dead letters: read when they changed, else kept.
	for k, it := range fresh {
		if it == nil || k.kind != keys.KindQueue {
			continue
		}
		n, _ := strconv.ParseInt(it.p.Info["dead"], 10, 64)
		prev := old[k]
		switch {
		case n == 0:
		case dirty[k] || prev == nil:
			q := queue.New(c.cli, k.name, queue.WithPrefix(c.root))
			it.dead, it.derr = q.FirstDeadLetters(rctx, c.rows)
			if it.derr != nil && errors.Is(it.derr, context.Canceled) {
				return next, it.derr
			}
		default:
			it.dead, it.derr = prev.dead, prev.derr
		}
	}
	c.mu.Lock()
	if full {
		c.items = map[id]*item{}
	}
	for k, it := range fresh {
		if it == nil {
			delete(c.items, k)
		} else {
			c.items[k] = it
		}
	}
	c.ready = true
	c.mu.Unlock()
	for k := range fresh {
		delete(dirty, k)
	}
	if full {
		clear(dirty)
	}
	if len(fresh) > 0 || full {
		c.publish(nil)
	}
	return next, nil
}

// publish makes a new snapshot of the items and tells every viewer.
func (c *cache) publish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	items := make([]*item, 0, len(c.items))
	for _, it := range c.items {
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i].p, items[j].p
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
	c.snap = &snapshot{version: c.snap.version + 1, at: time.Now(), items: items, err: err}
	close(c.changed)
	c.changed = make(chan struct{})
}

func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
