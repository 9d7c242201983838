package queue

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// candidate is an unclaimed message a consumer may try to claim.
type candidate struct {
	key  string // its index entry
	part string // partReady or partTimed
	mod  int64  // the entry's mod revision when read
	rec  record
	ord  order
}

// view is one read of the head of the queue: the first window of ready
// messages, the first window of due delayed messages, and when the next
// delayed message is due. Claimed messages are not in either range, so
// the head is always claimable: a read never pages.
type view struct {
	rev     int64
	now     int64 // unix ns: messages due by then are in the view
	cands   []candidate
	nextDue int64 // unix ns of the earliest message not yet due, or of a look again; 0 if none
	bounded bool  // the ready range read ended at the horizon: empty, it says nothing of what lies past it

	// The floors of the ready and delayed ranges: from (the keys their
	// reads began at, "" for the start of the range; no live entry was
	// below them then), and, for a view that is a read, at (the floor
	// keys' values then, "" where there was none).
	from, at floors
	read     bool
}

// headLen is how many operations headOps gives: parseView takes them in
// that order, and callers find their own operations after them.
const headLen = 4

// A floor is a key at or below every live entry of the ready range, or of
// the delayed range (the queue's floor keys, floor/r and floor/t, hold
// them): head reads and claim compares begin there instead of at the
// start of the range. Below it lie only the entries of messages already
// claimed, which etcd keeps in its index until it compacts (one per
// message consumed since, every one visited by any read or compare that
// covers it): without the floors, a queue's every claim costs the server
// more the more it has consumed since the last compaction.
//
// Every writer keeps the floors true. An Enqueue, and a Nack, compares
// the floor of its entry's range against the entry (lowering the floor
// first, in a Txn of its own, when the entry is below it); what puts a
// claimed message back (a give-back, a repair, a re-drive) deletes the
// floor, which then is the start of the range again. Claims raise them,
// now and then, to the first entry of their view: the claim Txn's
// compares prove that no entry before that one has been made since the
// view, and the view that none was live then.

// floors are a ready floor and a delayed one, by fr and ft ("" for none).
type floors [2]string

const (
	fr = iota // the ready range's floor
	ft        // the delayed range's
)

// floorParts are the ranges' parts, by fr and ft.
var floorParts = [2]string{partReady, partTimed}

// floorEvery is how many messages a process claims between raises of the
// floors: a raise is a small Put or two in a claim Txn; the entries it
// leaves below them are the floorEvery or so claimed since the last.
const floorEvery = 32

// horizonKeys is how many ready messages a head read's range covers when
// the queue is longer: etcd visits every key of a range it reads (it
// counts them for the answer, limit or not), so a read of the whole ready
// range would cost the server the whole backlog, for every claim.
const horizonKeys = 256

// dueHorizon bounds the look for the next delayed message: one further
// off is looked for again when this passes (by a consumer still idle then).
const dueHorizon = time.Minute

// horizon is where the process's head reads of one queue end: a key of
// the head's priority a little past the first horizonKeys ready messages
// (their ids begin with their enqueue time, so the key is that of a time
// picked from how densely the head's messages were enqueued). It is
// placed from what a head read shows, never by a read of its own: a read
// of the whole ready range (etcd would count all of it, limit or not) is
// made only by a process's first read, or when reads past the horizon
// found nothing twice. Every ready key before the horizon sorts before
// every key past it, so the first messages in [start, horizon) are the
// first of the queue whenever there are any; a read that finds none there
// looks further. Only how much the server visits depends on it, never
// which message is the head.
type horizon struct {
	mu      sync.Mutex
	end     string // "" while the whole ready range is read
	prio    int    // the priority of the end key
	until   int64  // the time of the end key (unix ns)
	delta   int64  // how far past the head's time the end is placed (ns)
	empties int    // reads in a row that found nothing before the end
	fresh   bool   // placed, and no read since has counted what lies before it

	reads, wide int64 // head reads parsed, and those whose ready range held more than 2*horizonKeys (for tests)

	floor      floors   // the floor keys' values, as last read ("" for none)
	floorRev   [2]int64 // the revisions they were read at
	sinceRaise int      // messages claimed by the process since it last raised the floors
}

// emptyLooks is how many reads in a row may find nothing before the
// horizon, each placing it further, before the next reads the whole ready
// range (the head moved to a worse priority, or past a pause in enqueues).
const emptyLooks = 2

// headPlan is one head read: where its ranges begin (the floors as last
// read) and where the ready range ends.
type headPlan struct {
	now   int64
	floor floors
	end   string
}

func (q *Queue) headHorizon() *horizon {
	return q.hub.Shared("queue horizon "+q.sp.Base(), func() any { return &horizon{} }).(*horizon)
}

// headPlan decides the next head read at now (unix ns).
func (q *Queue) headPlan(now int64) headPlan {
	h := q.headHorizon()
	h.mu.Lock()
	defer h.mu.Unlock()
	return headPlan{now: now, floor: h.floor, end: h.end}
}

// floorKey is the key of floor i (fr or ft).
func (q *Queue) floorKey(i int) string { return q.sp.Key(partFloor, floorParts[i]) }

// floorOfKey is the floor (fr or ft) of the range entry key is in, or -1.
func (q *Queue) floorOfKey(key string) int {
	for i, part := range floorParts {
		if strings.HasPrefix(key, q.sp.Part(part)) {
			return i
		}
	}
	return -1
}

// The floor key holds the floor's entry key and a NUL (which no key of
// the queue holds), so that etcd's compares, which know only =, !=, < and
// >, can say "at or above" and "at or below": floor ≥ k is value > k, and
// floor ≤ k is value < k+NUL+NUL.
func floorValue(k string) string { return k + "\x00" }

func floorOf(val []byte) string { return strings.TrimSuffix(string(val), "\x00") }

// raiseFloor reports whether a claim of n messages should raise the
// floors, counting them. A claim Txn takes four ops a message: one that
// would not fit the raises' two Puts leaves them to the next.
func (q *Queue) raiseFloor(n int) bool {
	h := q.headHorizon()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sinceRaise += n
	if h.sinceRaise < floorEvery || 4*n+2 > q.txnOps() {
		return false
	}
	h.sinceRaise = 0
	return true
}

// claimLimit is how many messages a claim of up to n takes: one fewer
// when a full Txn would leave no room for a raise of the floors that is
// due (else a pool claiming full batches would never raise them).
func (q *Queue) claimLimit(n int) int {
	h := q.headHorizon()
	h.mu.Lock()
	defer h.mu.Unlock()
	if n > 1 && h.sinceRaise >= floorEvery && 4*n+2 > q.txnOps() {
		return min(n-1, (q.txnOps()-2)/4)
	}
	return n
}

// txnOps is the server's limit of ops in a Txn, as the queue was told.
func (q *Queue) txnOps() int {
	if q.opts.maxTxnOps > 0 {
		return q.opts.maxTxnOps
	}
	return DefaultMaxTxnOps
}

// cachedFloors are the floors as the process last read them.
func (q *Queue) cachedFloors() floors {
	h := q.headHorizon()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.floor
}

// sawFloor records floor i's value as read at rev.
func (q *Queue) sawFloor(i int, at string, rev int64) {
	h := q.headHorizon()
	h.mu.Lock()
	defer h.mu.Unlock()
	if rev >= h.floorRev[i] {
		h.floor[i], h.floorRev[i] = at, rev
	}
}

// readFloors parses a read of the floor keys (floorsOp).
func (q *Queue) readFloors(kvs []*mvccpb.KeyValue) floors {
	var at floors
	for _, kv := range kvs {
		for i := range floorParts {
			if string(kv.Key) == q.floorKey(i) {
				at[i] = floorOf(kv.Value)
			}
		}
	}
	return at
}

// floorsOp reads both floor keys.
func (q *Queue) floorsOp() clientv3.Op {
	return clientv3.OpGet(q.sp.Part(partFloor), clientv3.WithPrefix())
}

// lowerFloor lowers floor i to key if it is above it, in a Txn of its
// own, and returns the floor as it is then.
func (q *Queue) lowerFloor(ctx context.Context, i int, key string) (string, error) {
	fk := q.floorKey(i)
	resp, err := q.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(fk), ">", floorValue(key))).
		Then(clientv3.OpPut(fk, floorValue(key))).Else(clientv3.OpGet(fk)).Commit()
	if err != nil {
		return "", err
	}
	at := key
	if !resp.Succeeded {
		at = ""
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			at = floorOf(kvs[0].Value)
		}
	}
	q.sawFloor(i, at, resp.Header.Revision)
	return at, nil
}

// belowFloors runs write, a Txn that puts low[i] (its lowest entry in
// range i; "" for none) fenced on each such floor being at or below its
// entry, as the process believes the floors to be. A floor believed above
// its entry is lowered first, in a Txn of its own (a lower floor is never
// wrong, and write may fill its own Txn's ops). write gets the compares,
// and reports whether they failed and, when its Txn read them, the floors
// as they are then (when it did not, each floor is lowered again, which
// reads it). Enqueue and Nack, the two writes that can land below a
// floor, go through it. what names the operation in errors; write's own
// errors are returned as they are.
func (q *Queue) belowFloors(ctx context.Context, what string, low floors, write func(fcs []clientv3.Cmp) (failed bool, now *floors, err error)) error {
	at, known := q.cachedFloors(), true
	for try := 0; ; try++ {
		var fcs []clientv3.Cmp
		for i, k := range low {
			if k == "" {
				continue
			}
			if !known || at[i] > k {
				var err error
				if at[i], err = q.lowerFloor(ctx, i, k); err != nil {
					return fmt.Errorf("queue %q: %s: %w", q.sp.Name(), what, etcderr.WrapNoSpace(err))
				}
			}
			fcs = append(fcs, q.floorAtMost(i, at[i], k))
		}
		failed, now, err := write(fcs)
		if err != nil || !failed {
			return err
		}
		if try == 8 {
			return fmt.Errorf("queue %q: %s: the queue's floors kept moving; retry", q.sp.Name(), what)
		}
		if known = now != nil; known {
			at = *now
		}
	}
}

// floorAtMost is the compare that floor i, believed to be at, is at or
// below key: on the floor's value when there is one, else on its absence.
func (q *Queue) floorAtMost(i int, at, key string) clientv3.Cmp {
	fk := q.floorKey(i)
	if at == "" {
		return clientv3.Compare(clientv3.CreateRevision(fk), "=", 0)
	}
	return clientv3.Compare(clientv3.Value(fk), "<", floorValue(key)+"\x00") // floor ≤ key
}

// headOps are the plan's operations (headLen of them): ready entries from
// the floor and due delayed entries (small index records, never
// payloads), the first one not yet due within dueHorizon, and the floor.
func (q *Queue) headOps(p headPlan) []clientv3.Op {
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	readyFrom, dueFrom := r, t
	if p.floor[fr] != "" {
		readyFrom = p.floor[fr]
	}
	readyEnd := keys.RangeEnd(r)
	if p.end != "" {
		readyEnd = p.end
	}
	dueEnd := t + encodeTime(p.now+1)
	if p.floor[ft] != "" {
		// (A floor past this process's now, raised by a process whose
		// clock is ahead: nothing below it is live, so nothing is due.)
		dueFrom = min(p.floor[ft], dueEnd)
	}
	return []clientv3.Op{
		clientv3.OpGet(readyFrom, clientv3.WithRange(readyEnd), clientv3.WithLimit(window)),
		clientv3.OpGet(dueFrom, clientv3.WithRange(dueEnd), clientv3.WithLimit(window)),
		clientv3.OpGet(dueEnd, clientv3.WithRange(t+encodeTime(p.now+int64(dueHorizon))), clientv3.WithLimit(1), clientv3.WithKeysOnly()),
		q.floorsOp(),
	}
}

// parseView builds a view from the responses of headOps(p), and moves the
// horizon by what they show.
func (q *Queue) parseView(rev int64, p headPlan, rs []*pb.ResponseOp) *view {
	at := q.readFloors(rs[3].GetResponseRange().Kvs)
	stale := false
	for i := range floorParts {
		q.sawFloor(i, at[i], rev)
		// The floor went down (or away) since the process last read it:
		// this read began too far in.
		stale = stale || p.floor[i] != "" && (at[i] == "" || at[i] < p.floor[i])
	}
	if stale {
		// An empty bounded view has the claimer read again, from the
		// floors read just now.
		return &view{rev: rev, now: p.now, bounded: true}
	}
	v := &view{rev: rev, now: p.now, bounded: p.end != "", from: p.floor, at: at, read: true}
	ready := rs[0].GetResponseRange()
	for i, part := range []string{partReady, partTimed} {
		prefix := q.sp.Part(part)
		for _, kv := range rs[i].GetResponseRange().Kvs {
			c, ok := q.candidate(part, strings.TrimPrefix(string(kv.Key), prefix), kv.Value, kv.ModRevision)
			if ok {
				v.cands = append(v.cands, c)
			}
		}
	}
	if kvs := rs[2].GetResponseRange().Kvs; len(kvs) > 0 {
		if o, err := parseTimed(strings.TrimPrefix(string(kvs[0].Key), q.sp.Part(partTimed))); err == nil {
			v.nextDue = o.ready
		}
	} else {
		// Maybe later ones: look again then. (An idle consumer's one read
		// a minute, besides what the process's watch tells it.)
		v.nextDue = p.now + int64(dueHorizon)
	}
	slices.SortFunc(v.cands, func(a, b candidate) int {
		switch {
		case a.ord.less(b.ord):
			return -1
		case b.ord.less(a.ord):
			return 1
		}
		return 0
	})
	q.headHorizon().moved(q.sp.Part(partReady), p, ready, v.cands)
	return v
}

// moved places the horizon by what a head read planned as p found: its
// ready range's answer and the view's candidates, sorted.
//
// How far past the head it goes (delta, a time) is learnt: the first read
// after a placement counts the live messages before the new end, and the
// placement's reach is scaled by how far that count was from horizonKeys
// (at most 16 times either way), and made at once when they were more
// than twice as many.
func (h *horizon) moved(r string, p headPlan, ready *pb.RangeResponse, cands []candidate) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reads++
	if ready.Count > 2*horizonKeys {
		h.wide++
	}
	if h.end != p.end {
		return // placed since this read was planned
	}
	if p.end != "" && len(ready.Kvs) == 0 {
		// Nothing before the horizon: look further, then read it all.
		h.empties++
		if h.empties > emptyLooks {
			h.end, h.empties, h.fresh = "", 0, false
			return
		}
		h.delta = min(2*h.delta, maxDelta)
		h.until = min(h.until, math.MaxInt64-h.delta) + h.delta
		h.end, h.fresh = r+encodePriority(h.prio)+"-"+encodeTime(h.until), true
		return
	}
	h.empties = 0
	place := false
	switch {
	case p.end == "":
		place = ready.Count > horizonKeys // else the whole range is short: read it all
	case h.fresh:
		h.fresh = false
		// Scale delta to what it held, at most 16 times either way.
		c := max(ready.Count, 1)
		h.delta = min(max(h.delta*min(c*16, horizonKeys)/min(c, horizonKeys*16), minDelta), maxDelta)
		place = c < window || c > 2*horizonKeys
	default:
		place = ready.Count < window // claimed up to near the horizon: this read saw all that is left before it
	}
	if !place {
		return
	}
	var head *candidate
	for i := range cands {
		if cands[i].part == partReady {
			head = &cands[i]
			break
		}
	}
	if head == nil {
		return
	}
	h.delta = min(max(h.delta, minDelta), maxDelta)
	h.prio, h.until = head.ord.prio, min(head.ord.ready, math.MaxInt64-h.delta)+h.delta
	h.end, h.fresh = r+encodePriority(h.prio)+"-"+encodeTime(h.until), true
}

// minDelta and maxDelta bound how far past the head's enqueue time the
// horizon is placed.
const (
	minDelta = int64(time.Millisecond)
	maxDelta = int64(24 * time.Hour)
)

// candidate parses one index entry; ok is false for a key this package
// did not write, which is never claimed.
func (q *Queue) candidate(part, suffix string, val []byte, mod int64) (candidate, bool) {
	parse := parseReady
	if part == partTimed {
		parse = parseTimed
	}
	ord, err := parse(suffix)
	if err != nil {
		return candidate{}, false
	}
	rec, err := decodeRecord(val)
	if err != nil {
		return candidate{}, false
	}
	return candidate{key: q.sp.Key(part, suffix), part: part, mod: mod, rec: rec, ord: ord}, true
}

// read returns a fresh view of the head: one read.
func (q *Queue) read(ctx context.Context) (*view, error) {
	p := q.headPlan(time.Now().UnixNano())
	resp, err := q.cli.Txn(ctx).Then(q.headOps(p)...).Commit()
	if err != nil {
		return nil, err
	}
	return q.parseView(resp.Header.Revision, p, resp.Responses), nil
}

// pick chooses which candidate to try. With no contention seen it is the
// head, so a lone consumer gets strict priority and FIFO order; after
// conflicts, claims spread over the first few candidates, each consumer
// starting from its own place (by its lease) so that consumers of
// different processes stop racing for the same key.
func (q *Queue) pick(cands []candidate, lease int64, attempt int) candidate {
	q.mu.Lock()
	n := min(q.spread, len(cands))
	q.mu.Unlock()
	if n <= 1 {
		return cands[0]
	}
	// Fibonacci hashing of the lease: leases are sequential, their
	// places should not be.
	h := (uint64(lease) * 0x9E3779B97F4A7C15) >> 32
	return cands[(int(h%uint64(n))+attempt+rand.IntN(2))%n]
}

// pickN chooses up to n candidates to claim together: the one pick
// chooses and those after it in line.
func (q *Queue) pickN(cands []candidate, lease int64, attempt, n int) []candidate {
	if n == 1 {
		return []candidate{q.pick(cands, lease, attempt)}
	}
	first := q.pick(cands, lease, attempt)
	i := slices.IndexFunc(cands, func(c candidate) bool { return c.key == first.key })
	return cands[i:min(len(cands), i+n)]
}

// contended adjusts the spread: double it on a lost race, shrink it by
// one on a claim won at the first try.
func (q *Queue) contended(lost bool) {
	q.mu.Lock()
	if lost {
		q.spread = min(q.spread*2, window)
	} else {
		q.spread = max(q.spread-1, 1)
	}
	q.mu.Unlock()
}

// cacheViews bounds the views kept from Acks for the next Claims.
const cacheViews = 8

// keep stores a view read by an Ack's Txn, so that the next Claim on this
// Queue needs no read of its own: claim + ack is then two Txns. An empty
// view is kept too: it is a linearizable read (a Txn's), and a consumer
// that idles on it learns from the process's dispatcher of anything freed
// after it.
func (q *Queue) keep(v *view) {
	q.mu.Lock()
	if len(q.views) == cacheViews {
		q.views = q.views[1:]
	}
	q.views = append(q.views, v)
	q.mu.Unlock()
}

// cached takes the newest kept view, or nil. Each view serves one Claim.
func (q *Queue) cached() *view {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.views) == 0 {
		return nil
	}
	v := q.views[len(q.views)-1]
	q.views = q.views[:len(q.views)-1]
	return v
}
