package watch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// loadPage is how many keys one read of a mirror's load fetches.
const loadPage = 1000

// Mirror is the process's copy of one primitive's keys (a lock's line, a
// semaphore's requests and capacity, an election's candidates), kept
// current by one Feed. Primitives decide locally against it: a lock
// waiter is first when its line's First is its own key, a semaphore
// request fits when the weight Ahead of it plus its own fits. So a
// handoff costs the holder's write and one watch event, and no read at
// all; and what a decision costs never grows with the number of keys.
//
// The copy is exact at its revision: it starts from a read made after its
// feed's watch was confirmed, applies every event above that read, and
// reloads whenever the feed says events were missed. Its memory grows
// with the keys of the range (once per process), never per waiter.
type Mirror struct {
	hub  *Hub
	sp   span
	base string

	mu       sync.Mutex
	refs     int
	idle     *time.Timer
	running  bool
	stop     context.CancelFunc
	feed     *Feed
	loaded   bool
	rev      int64
	ents     map[string]*Entry
	lines    map[string]*Line
	err      error
	changed  chan struct{} // closed and replaced after every change
	lis      map[*listener]struct{}
	attached map[string]*Waitlist
	shared   map[string]any
	pending  []*clientv3.Event // events that arrived while a load was under way
	// progressed counts the progress notifications applied (and loads,
	// which are current when they finish), for Current.
	progressed uint64
	loads      uint64 // completed loads: a load is current when it ends
	// loadMu makes loads one at a time: the run loop's after a resync,
	// and a waiter's when etcd does not answer progress requests.
	loadMu sync.Mutex
}

// Change is what a listener is told after the mirror moved: the events
// applied (in revision order), or Reloaded when the whole state was read
// again (events may have been missed: re-check everything), or Err when
// the mirror ended for good.
type Change struct {
	Rev      int64
	Events   []*clientv3.Event
	Reloaded bool
	Err      error
}

// Listener is called, with the mirror locked, after every change. It must
// not block or call back into the mirror's locking methods; it reads the
// state through the View it is given.
type Listener func(v *View, c Change)

type listener struct{ fn Listener }

// Mirror returns the hub's mirror of the keys under base, starting it if
// needed, with a reference the caller gives back with Release.
func (h *Hub) Mirror(base string) *Mirror {
	h.mu.Lock()
	defer h.mu.Unlock()
	sp := span{base, keys.RangeEnd(base)}
	m, ok := h.mirrors[sp]
	if !ok {
		m = &Mirror{hub: h, sp: sp, base: base, lis: map[*listener]struct{}{}, changed: make(chan struct{})}
		h.mirrors[sp] = m
	}
	m.mu.Lock()
	m.refs++
	if m.idle != nil {
		m.idle.Stop()
		m.idle = nil
	}
	if !m.running {
		m.start()
	}
	m.mu.Unlock()
	return m
}

// Warm reports whether the hub has a loaded mirror of base right now (one
// some waiter or holder of the process keeps open), without starting one:
// a primitive can then skip reading what the mirror already knows.
func (h *Hub) Warm(base string) bool {
	h.mu.Lock()
	m, ok := h.mirrors[span{base, keys.RangeEnd(base)}]
	h.mu.Unlock()
	if !ok {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running && m.loaded && m.err == nil
}

// Release gives back a reference.
func (m *Mirror) Release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refs--
	if m.refs == 0 && m.running && m.idle == nil {
		m.idle = time.AfterFunc(idleTimeout, m.stopIfIdle)
	}
}

func (m *Mirror) stopIfIdle() {
	m.hub.mu.Lock()
	defer m.hub.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == 0 && m.running {
		m.halt()
		delete(m.hub.mirrors, m.sp)
	}
}

// start runs the mirror. h.mu and m.mu held.
func (m *Mirror) start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.running, m.stop, m.err, m.loaded = true, cancel, nil, false
	m.ents, m.lines, m.pending = map[string]*Entry{}, map[string]*Line{}, nil
	m.feed = m.hub.feedLocked(m.sp.key, m.sp.end)
	sub := m.feed.subscribeDirect(m.apply)
	go m.run(ctx, sub)
}

// halt stops the mirror. m.mu held.
func (m *Mirror) halt() {
	m.stop()
	m.running, m.loaded = false, false
	m.feed.Release()
	if m.idle != nil {
		m.idle.Stop()
		m.idle = nil
	}
}

func (m *Mirror) run(ctx context.Context, sub *Sub) {
	defer sub.Close()
	pause := 10 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.C():
		}
		for {
			evs, resync, err := sub.Take()
			switch {
			case err != nil:
				m.fail(err)
				return
			case resync:
				for {
					err := m.load(ctx)
					if err == nil {
						pause = 10 * time.Millisecond
						break
					}
					if ctx.Err() != nil {
						return
					}
					if etcderr.Refused(err) || etcderr.Closed(m.hub.cli) {
						m.fail(etcderr.Explain(m.hub.cli, err))
						return
					}
					if !sleep(ctx, pause) {
						return
					}
					pause = min(2*pause, 500*time.Millisecond)
				}
				continue
			case len(evs) > 0:
				m.apply(evs, 0) // never: a direct subscriber gets them at once
				continue
			}
			break
		}
	}
}

// fail ends the mirror with err; the next Mirror call starts afresh.
func (m *Mirror) fail(err error) {
	m.hub.mu.Lock()
	if m.hub.mirrors[m.sp] == m {
		delete(m.hub.mirrors, m.sp)
	}
	m.hub.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
	m.notify(Change{Rev: m.rev, Err: err})
	if m.running {
		m.halt()
	}
}

// load reads the whole range at one revision, in pages, and replaces the
// state with it.
func (m *Mirror) load(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	// From now on, events wait in pending: the old state missed some, and
	// the new one is not read yet.
	m.mu.Lock()
	m.loaded, m.pending = false, nil
	m.mu.Unlock()
	cli := m.hub.cli
	var rev int64
	var kvs []*mvccpb.KeyValue
	from := m.sp.key
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(m.sp.end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return err
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
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ents, m.lines = make(map[string]*Entry, len(kvs)), map[string]*Line{}
	for _, kv := range kvs {
		m.put(kv)
	}
	for _, l := range m.lines {
		l.rebuild()
	}
	m.rev, m.loaded = rev, true
	m.loads++
	m.notify(Change{Rev: rev, Reloaded: true})
	pending := m.pending
	m.pending = nil
	m.applyLocked(pending)
	return nil
}

// apply folds events into the state, one revision at a time, and tells
// the listeners after each revision: a listener sees the state exactly as
// it was at that revision (the revision a grant is judged at).
func (m *Mirror) apply(evs []*clientv3.Event, progress int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if progress > 0 {
		// Nothing in the range changed up to progress (a load under way
		// reads at a revision of its own and ignores this).
		if m.loaded {
			m.rev = max(m.rev, progress)
			m.progressed++
			close(m.changed)
			m.changed = make(chan struct{})
		}
		return
	}
	if !m.loaded {
		// A load is under way: it covers what it reads, and the rest is
		// applied after it.
		m.pending = append(m.pending, evs...)
		return
	}
	m.applyLocked(evs)
}

func (m *Mirror) applyLocked(evs []*clientv3.Event) {
	for i := 0; i < len(evs); {
		rev := evs[i].Kv.ModRevision
		j := i
		for j < len(evs) && evs[j].Kv.ModRevision == rev {
			j++
		}
		if rev > m.rev {
			for _, ev := range evs[i:j] {
				if ev.Type == clientv3.EventTypeDelete {
					m.del(string(ev.Kv.Key))
				} else {
					m.put(ev.Kv)
				}
			}
			m.rev = rev
			m.notify(Change{Rev: rev, Events: evs[i:j]})
		}
		i = j
	}
}

func (m *Mirror) part(key string) string {
	rest := strings.TrimPrefix(key, m.base)
	if p, _, ok := strings.Cut(rest, "/"); ok {
		return p
	}
	return ""
}

func (m *Mirror) put(kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	w := weightOf(kv.Value)
	if e, ok := m.ents[key]; ok && e.CreateRev == kv.CreateRevision {
		old := e.weight
		e.ModRev, e.Version, e.Lease, e.Value, e.weight, e.rec = kv.ModRevision, kv.Version, kv.Lease, kv.Value, w, nil
		if l := m.lines[e.Part]; l != nil && !e.gone {
			l.update(e, old)
		}
		return
	} else if ok {
		m.del(key) // recreated under the same name
	}
	e := &Entry{Key: key, Part: m.part(key), CreateRev: kv.CreateRevision, ModRev: kv.ModRevision, Version: kv.Version,
		Lease: kv.Lease, Value: kv.Value, weight: w}
	m.ents[key] = e
	l := m.lines[e.Part]
	if l == nil {
		l = newLine()
		m.lines[e.Part] = l
	}
	if !m.loaded {
		// A load puts keys in key order, not in line order: it sorts
		// and builds each line once, after its last put (one add each
		// would rebuild the line per key: quadratic in the line).
		l.ents = append(l.ents, e)
		return
	}
	l.add(e)
}

func (m *Mirror) del(key string) {
	e, ok := m.ents[key]
	if !ok {
		return
	}
	delete(m.ents, key)
	if l := m.lines[e.Part]; l != nil {
		l.remove(e)
	}
}

// notify tells the listeners and wakes Synced waiters. m.mu held.
func (m *Mirror) notify(c Change) {
	v := &View{m: m}
	for l := range m.lis {
		l.fn(v, c)
	}
	close(m.changed)
	m.changed = make(chan struct{})
}

// Listen adds a listener, calls it at once with the current state (a
// Reloaded change, when the mirror is loaded), and returns the function
// that removes it.
func (m *Mirror) Listen(fn Listener) (cancel func()) {
	l := &listener{fn: fn}
	m.mu.Lock()
	m.lis[l] = struct{}{}
	switch {
	case m.err != nil:
		fn(&View{m: m}, Change{Rev: m.rev, Err: m.err})
	case m.loaded:
		fn(&View{m: m}, Change{Rev: m.rev, Reloaded: true})
	}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.lis, l)
		m.mu.Unlock()
	}
}

// Read calls fn with the state, locked, once the mirror is loaded and
// current at revision rev or later (0: whatever is loaded), or returns
// ctx's error or the mirror's.
func (m *Mirror) Read(ctx context.Context, rev int64, fn func(v *View)) error {
	for {
		m.mu.Lock()
		if m.err != nil {
			err := m.err
			m.mu.Unlock()
			return err
		}
		if m.loaded && m.rev >= rev {
			fn(&View{m: m})
			m.mu.Unlock()
			return nil
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Shared returns the mirror's value called name, made on first use by mk
// together with a Listener that keeps it current: per-mirror state of a
// primitive (its waiters), read and changed only under the mirror's lock,
// through Locked or in the listener.
func (m *Mirror) Shared(name string, mk func() (any, Listener)) any {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shared == nil {
		m.shared = map[string]any{}
	}
	if v, ok := m.shared[name]; ok {
		return v
	}
	v, l := mk()
	m.shared[name] = v
	m.lis[&listener{fn: l}] = struct{}{}
	return v
}

// Locked calls fn with the mirror locked, loaded or not (v.Rev is 0 until
// the first load), and returns the mirror's error if it ended.
func (m *Mirror) Locked(fn func(v *View, loaded bool)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	fn(&View{m: m}, m.loaded)
	return nil
}

// Sync waits until the mirror is current at revision rev or later, even
// when nothing in its range changed since (it asks etcd for a progress
// notification then): a primitive about to act on the mirror for a
// decision that must not miss a recent change syncs it first to a
// revision it read.
func (m *Mirror) Sync(ctx context.Context, rev int64) error {
	return m.await(ctx, func() bool { return m.rev >= rev })
}

// Current waits until the mirror is as current as etcd was at some moment
// after the call: it asks for a progress notification (a message on the
// watch stream, no request of its own) and waits for one. A primitive
// about to act on what the mirror does not show (no successor in line,
// say) makes sure it is not just lagging. When etcd leaves the request
// unanswered, it reloads the mirror instead (see progressAsks).
func (m *Mirror) Current(ctx context.Context) error {
	m.mu.Lock()
	seq, loads := m.progressed, m.loads
	m.mu.Unlock()
	return m.await(ctx, func() bool { return m.progressed > seq || m.loads > loads })
}

// progressAsks is how many progress requests a waiter makes, 200 ms
// apart, before it reloads the mirror instead. etcd answers a progress
// request only when every watch of the stream is synced, and some servers
// (seen on 3.6.16 after a compaction) leave one unanswered for good; a
// reload reads the range, which the waiter would otherwise wait on
// forever.
const progressAsks = 3

// await waits until the loaded mirror satisfies done (called with m.mu
// held), asking etcd for progress notifications meanwhile and reloading
// the mirror when they go unanswered.
func (m *Mirror) await(ctx context.Context, done func() bool) error {
	asked, unanswered := false, 0
	for {
		m.mu.Lock()
		if m.err != nil {
			err := m.err
			m.mu.Unlock()
			return err
		}
		if m.loaded && done() {
			m.mu.Unlock()
			return nil
		}
		ch, loaded := m.changed, m.loaded
		m.mu.Unlock()
		if loaded && !asked {
			if unanswered >= progressAsks {
				if err := m.load(ctx); err != nil {
					return etcderr.Explain(m.hub.cli, err)
				}
				unanswered = 0
				continue
			}
			asked = true
			if err := m.feed.RequestProgress(ctx); err != nil {
				return err
			}
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ch:
		case <-t.C:
			asked = false // ask again: a progress request can race a reconnect
			unanswered++
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// Err returns why the mirror ended, or nil.
func (m *Mirror) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// View is read access to a mirror's state, valid only inside the Listener
// or Read call it was given to.
type View struct{ m *Mirror }

// Rev is the revision the state is exact at.
func (v *View) Rev() int64 { return v.m.rev }

// Get returns the key's entry, or nil.
func (v *View) Get(key string) *Entry { return v.m.ents[key] }

// Line returns the line of one part (never nil).
func (v *View) Line(part string) *Line {
	if l := v.m.lines[part]; l != nil {
		return l
	}
	return newLine()
}

// Len is the number of keys mirrored.
func (v *View) Len() int { return len(v.m.ents) }

// ErrGone is the cause a GoneWatch reports for a key deleted or replaced.
var ErrGone = errors.New("own key deleted")
