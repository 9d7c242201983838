package queue

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// dispatchIdle is how long a dispatcher keeps following its queue after
// the last Claim of the process.
const dispatchIdle = 30 * time.Second

// dispatcher is the process's one follower of a queue: its consumers that
// found the queue empty wait here, on one watch of the queue's index (never
// its payloads), instead of one watch each. A new message wakes exactly
// one waiting consumer and hands it the message, so that consumer claims
// with no read, and the others sleep on: a message costs a process one
// claim Txn however many of its consumers are idle. It also repairs
// claims whose consumer died: their claim key went with the lease and
// left the message in flight, and the dispatcher puts it back.
type dispatcher struct {
	q   *Queue // any Queue value of this name and root: for keys and client
	hub *watch.Hub

	mu       sync.Mutex
	users    int
	idleT    *time.Timer
	running  bool
	stop     context.CancelFunc
	runCtx   context.Context
	synced   chan struct{} // closed once the feed is synced
	swept    bool          // the sweep for unwatched dead claims ran since the feed started
	since    int64         // every event above since has been seen
	lastFree int64         // the last event that may have freed a message
	nextDue  int64         // unix ns of the earliest delayed message known
	dueT     *time.Timer
	waiters  []*idler

	trying       map[string]struct{} // index entries a consumer of the process is trying to claim
	claimed      map[string]int64    // index entries the process claimed, by revision
	claimedOrder []string            // claimed's keys, oldest first
	settled      chan struct{}       // closed when a try ends, for consumers waiting on one

	broken    []string // ids of messages whose claim went without them, to put back
	repairing bool     // a goroutine is putting back broken
}

type idler struct {
	ch chan wake
}

// wake is what a waiting consumer is woken with: a view holding the
// message that woke it, nil to read the head again, or an error.
type wake struct {
	v   *view
	err error
}

func (q *Queue) dispatcher() *dispatcher {
	return q.hub.Shared("queue dispatcher "+q.sp.Base(), func() any {
		return &dispatcher{q: q, hub: q.hub}
	}).(*dispatcher)
}

// use and unuse bracket a Claim: the dispatcher follows the queue while
// the process claims from it, and a while after.
func (d *dispatcher) use() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users++
	if d.idleT != nil {
		d.idleT.Stop()
		d.idleT = nil
	}
	if !d.running {
		ctx, cancel := context.WithCancel(context.Background())
		d.running, d.stop, d.runCtx, d.synced, d.since, d.swept = true, cancel, ctx, make(chan struct{}), 0, false
		f := d.hub.Feed(d.q.sp.Base(), d.q.indexEnd())
		go d.run(ctx, f, f.Subscribe(0))
	}
}

func (d *dispatcher) unuse() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users--
	if d.users == 0 && d.running && d.idleT == nil {
		d.idleT = time.AfterFunc(dispatchIdle, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.users == 0 && d.running {
				d.halt()
			}
		})
	}
}

// halt stops following. d.mu held.
func (d *dispatcher) halt() {
	d.stop()
	d.running = false
	if d.dueT != nil {
		d.dueT.Stop()
		d.dueT = nil
	}
}

func (d *dispatcher) run(ctx context.Context, f *watch.Feed, sub *watch.Sub) {
	defer f.Release()
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sub.C():
		}
		evs, resync, err := sub.Take()
		switch {
		case err != nil:
			d.mu.Lock()
			d.wakeAll(wake{err: err})
			d.halt()
			d.mu.Unlock()
			return
		case resync:
			d.mu.Lock()
			d.since = sub.Since()
			d.lastFree = d.since
			d.swept = false // claims may have died while nobody watched
			select {
			case <-d.synced:
			default:
				close(d.synced)
			}
			d.wakeAll(wake{}) // they may have missed something: read again
			d.mu.Unlock()
		case len(evs) > 0:
			d.events(ctx, evs)
		}
	}
}

// events reacts to what the feed delivered: a message put where it can
// be claimed wakes one consumer; a claim key gone with its message still
// in flight (the consumer died) is repaired.
func (d *dispatcher) events(ctx context.Context, evs []*clientv3.Event) {
	q := d.q
	r, t, f, c := q.sp.Part(partReady), q.sp.Part(partTimed), q.sp.Part(partInflight), q.sp.Part(partClaim)
	now := time.Now().UnixNano()
	settled := map[string]int64{} // message ids whose f/ entry was deleted, by revision
	for _, ev := range evs {
		if k := string(ev.Kv.Key); ev.Type == clientv3.EventTypeDelete && strings.HasPrefix(k, f) {
			settled[strings.TrimPrefix(k, f)] = ev.Kv.ModRevision
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	broken := len(d.broken)
	defer func() {
		if len(d.broken) > broken && !d.repairing {
			d.repairing = true
			go d.repairLoop(ctx)
		}
	}()
	floor := d.since
	for _, ev := range evs {
		k := string(ev.Kv.Key)
		rev := ev.Kv.ModRevision
		if rev <= floor {
			continue
		}
		d.since = max(d.since, rev)
		switch {
		case k == q.configKey():
			var val []byte
			if ev.Type == clientv3.EventTypePut {
				val = ev.Kv.Value
			}
			q.settings().observe(val, rev)
		case ev.Type == clientv3.EventTypePut && strings.HasPrefix(k, r):
			if cand, ok := q.candidate(partReady, strings.TrimPrefix(k, r), ev.Kv.Value, rev); ok {
				d.offer(cand, rev, now)
			}
		case ev.Type == clientv3.EventTypePut && strings.HasPrefix(k, t):
			cand, ok := q.candidate(partTimed, strings.TrimPrefix(k, t), ev.Kv.Value, rev)
			switch {
			case !ok:
			case cand.ord.ready <= now:
				d.offer(cand, rev, now) // a Nack without delay: due at once
			default:
				d.due(cand.ord.ready)
			}
		case ev.Type == clientv3.EventTypeDelete && strings.HasPrefix(k, c):
			id, _, _ := strings.Cut(strings.TrimPrefix(k, c), "/")
			if settled[id] != rev {
				// The claim went without its message (the consumer's
				// lease ended, or a claim was given back): put it back.
				d.broken = append(d.broken, id)
			}
		}
	}
}

// offer hands a claimable message to one waiting consumer, or notes that
// something was freed for consumers that read the head before it. d.mu
// held.
func (d *dispatcher) offer(c candidate, rev, now int64) {
	d.lastFree = max(d.lastFree, rev)
	if len(d.waiters) == 0 {
		return
	}
	w := d.waiters[0]
	d.waiters = d.waiters[1:]
	// Its claim compares from the floor as the process last read it: an
	// entry put below that since lowered or deleted the floor, and the
	// claim fails and reads again.
	w.ch <- wake{v: &view{rev: rev, now: now, cands: []candidate{c}, from: d.q.cachedFloors()}}
}

// pass wakes one waiting consumer to read the head: a consumer that took
// one message of several passes the rest on.
func (d *dispatcher) pass() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.waiters) > 0 {
		w := d.waiters[0]
		d.waiters = d.waiters[1:]
		w.ch <- wake{}
	}
}

// wakeAll wakes every waiting consumer. d.mu held.
func (d *dispatcher) wakeAll(w wake) {
	for _, x := range d.waiters {
		x.ch <- w
	}
	d.waiters = nil
}

// due arranges a wake-up when the delayed message due at ns is due. d.mu
// held.
func (d *dispatcher) due(ns int64) {
	if d.nextDue != 0 && d.nextDue <= ns {
		return
	}
	d.nextDue = ns
	if d.dueT != nil {
		d.dueT.Stop()
	}
	d.dueT = time.AfterFunc(time.Until(unixTime(ns)), func() {
		d.mu.Lock()
		d.nextDue, d.dueT = 0, nil
		d.lastFree = max(d.lastFree, d.since)
		d.mu.Unlock()
		d.pass()
	})
}

// idle blocks the consumer whose view v found nothing to claim until
// something may have become claimable, and returns a view to try (the
// message that woke it) or nil to read the head again.
func (d *dispatcher) idle(ctx context.Context, l *lease.Session, v *view) (*view, error) {
	d.mu.Lock()
	synced := d.synced
	d.mu.Unlock()
	select {
	case <-synced:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.Done():
		return nil, l.Err()
	}
	d.mu.Lock()
	if !d.running {
		d.mu.Unlock()
		return nil, nil
	}
	if v.rev < d.lastFree {
		// Something may have been freed after this view was read (or the
		// feed started after it, and cannot say).
		d.mu.Unlock()
		return nil, nil
	}
	if v.nextDue != 0 {
		d.due(v.nextDue)
	}
	if !d.swept {
		// The first consumer to find nothing to claim since the feed
		// started looks for claims that died while no process followed
		// the queue. Busy consumers never pay for it: a process that
		// follows the queue repairs dead claims as it sees them go.
		d.swept = true
		go d.sweep(d.runCtx)
	}
	w := &idler{ch: make(chan wake, 1)}
	d.waiters = append(d.waiters, w)
	d.mu.Unlock()
	select {
	case got := <-w.ch:
		return got.v, got.err
	case <-ctx.Done():
		d.leave(w)
		return nil, ctx.Err()
	case <-l.Done():
		d.leave(w)
		return nil, l.Err()
	}
}

// leave removes a consumer that stopped waiting, passing on a wake-up it
// was handed in the meantime, so no message is left waiting for a
// consumer that is gone.
func (d *dispatcher) leave(w *idler) {
	d.mu.Lock()
	for i, x := range d.waiters {
		if x == w {
			d.waiters = append(d.waiters[:i], d.waiters[i+1:]...)
			d.mu.Unlock()
			return
		}
	}
	d.mu.Unlock()
	got := <-w.ch
	if got.err != nil {
		return
	}
	if got.v != nil && len(got.v.cands) > 0 {
		d.mu.Lock()
		d.offer(got.v.cands[0], got.v.rev, got.v.now)
		d.mu.Unlock()
		return
	}
	d.pass()
}

// repairLoop puts back the messages whose claims went without them, in
// the order their claims were seen to go, until there are none left. One
// goroutine does it for the dispatcher, so that messages come back in line
// order: a consumer woken by the first to come back must not be handed a
// later one while an earlier one is still in flight.
func (d *dispatcher) repairLoop(ctx context.Context) {
	for {
		d.mu.Lock()
		ids := d.broken
		d.broken = nil
		if len(ids) == 0 {
			d.repairing = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		d.repair(ctx, ids)
	}
}

// repairBatch bounds the messages put back in one Txn: each costs two
// compares and two operations, under etcd's default of 128 of each.
const repairBatch = 32

// broken is a message in flight whose claim may be gone.
type broken struct {
	key string // its f/ entry
	mod int64
	fl  inflight
	ord order
}

// repair puts back the messages with these ids whose claim key is gone
// while they are still in flight: their consumer died (or gave the claim
// back without finishing). Every process that sees it may try; the Txns
// let exactly one succeed for each message. It reads the in-flight
// entries in batches and puts them back in line order.
func (d *dispatcher) repair(ctx context.Context, ids []string) {
	q := d.q
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var bs []broken
	for chunk := range slices.Chunk(ids, repairBatch) {
		gets := make([]clientv3.Op, len(chunk))
		for i, id := range chunk {
			gets[i] = clientv3.OpGet(q.sp.Key(partInflight, id))
		}
		resp, err := q.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return // the next consumer to sweep tries again
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				if b, ok := q.brokenOf(kv.Key, kv.Value, kv.ModRevision); ok {
					bs = append(bs, b)
				}
			}
		}
	}
	d.putBack(ctx, bs)
}

// brokenOf parses an in-flight entry; ok is false for one this package
// did not write.
func (q *Queue) brokenOf(key, val []byte, mod int64) (broken, bool) {
	fl, err := decodeInflight(val)
	if err != nil {
		return broken{}, false
	}
	b := broken{key: string(key), mod: mod, fl: fl}
	switch r, t := q.sp.Part(partReady), q.sp.Part(partTimed); {
	case strings.HasPrefix(fl.from, r):
		b.ord, err = parseReady(strings.TrimPrefix(fl.from, r))
	case strings.HasPrefix(fl.from, t):
		b.ord, err = parseTimed(strings.TrimPrefix(fl.from, t))
	default:
		return broken{}, false
	}
	return b, err == nil
}

// putBack returns these in-flight messages to their place in line, if
// their claims are still gone, in line order: a batch at a time in one
// Txn, or, when some of a batch changed meanwhile (another process put it
// back, or it was settled), one at a time. A failure is left alone: the
// next consumer to sweep tries again.
func (d *dispatcher) putBack(ctx context.Context, bs []broken) {
	slices.SortFunc(bs, func(a, b broken) int {
		switch {
		case a.ord.less(b.ord):
			return -1
		case b.ord.less(a.ord):
			return 1
		}
		return 0
	})
	guard := func(b broken) []clientv3.Cmp {
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(b.fl.claim), "=", 0), clientv3.Compare(clientv3.ModRevision(b.key), "=", b.mod)}
	}
	ops := func(b broken) []clientv3.Op {
		return []clientv3.Op{clientv3.OpDelete(b.key), clientv3.OpPut(b.fl.from, string(b.fl.rec.encode()))}
	}
	// An entry put back may be below its range's floor: the floors go,
	// once per Txn (etcd refuses a Txn that names a key twice).
	floor := []clientv3.Op{clientv3.OpDelete(d.q.floorKey(fr)), clientv3.OpDelete(d.q.floorKey(ft))}
	for chunk := range slices.Chunk(bs, repairBatch) {
		var cmps []clientv3.Cmp
		then := slices.Clone(floor)
		for _, b := range chunk {
			cmps, then = append(cmps, guard(b)...), append(then, ops(b)...)
		}
		resp, err := d.q.cli.Txn(ctx).If(cmps...).Then(then...).Commit()
		if err != nil {
			return
		}
		if resp.Succeeded || len(chunk) == 1 {
			continue
		}
		for _, b := range chunk {
			if _, err := d.q.cli.Txn(ctx).If(guard(b)...).Then(append(ops(b), floor...)...).Commit(); err != nil {
				return
			}
		}
	}
}

// sweep looks once, after the feed (re)started, for messages in flight
// whose claim is gone: their consumer died while no process was following
// the queue. It pages through the in-flight entries (small records) and
// checks their claim keys in batches.
func (d *dispatcher) sweep(ctx context.Context) {
	q := d.q
	defer func() {
		// And, when the queue keeps dead letters for a while only, it
		// discards the older ones (a failure waits for the next sweep).
		// It goes by the settings the process knows, so a queue without
		// a retention costs the sweep nothing more.
		st := q.settings()
		st.mu.Lock()
		retain := st.loaded && st.cfg.DeadRetention > 0
		st.mu.Unlock()
		if retain {
			pctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
			q.PurgeDead(pctx)
			cancel()
		}
	}()
	f := q.sp.Part(partInflight)
	from := f
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
		resp, err := q.cli.Get(rctx, from, clientv3.WithRange(keys.RangeEnd(f)), clientv3.WithLimit(100))
		if err != nil || len(resp.Kvs) == 0 {
			cancel()
			return
		}
		var bs, gone []broken
		var gets []clientv3.Op
		for _, kv := range resp.Kvs {
			if b, ok := q.brokenOf(kv.Key, kv.Value, kv.ModRevision); ok {
				bs = append(bs, b)
				// At the page's revision: a message acked since then went
				// with its claim in one Txn, and must not look like one
				// whose claim died (a put-back Txn for nothing).
				gets = append(gets, clientv3.OpGet(b.fl.claim, clientv3.WithKeysOnly(), clientv3.WithRev(resp.Header.Revision)))
			}
		}
		if len(gets) > 0 {
			// One Txn: a page is at most 100, under etcd's 128 operations.
			cresp, err := q.cli.Txn(rctx).Then(gets...).Commit()
			if err == nil {
				for i, r := range cresp.Responses {
					if len(r.GetResponseRange().Kvs) == 0 {
						gone = append(gone, bs[i])
					}
				}
			}
		}
		d.putBack(rctx, gone)
		cancel()
		if !resp.More {
			return
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
