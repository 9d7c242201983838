package queue

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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
	nextDue int64 // unix ns of the earliest message not yet due, 0 if none
}

// headOps reads the head: ready entries and due delayed entries (small
// index records, never payloads), and the first one not yet due.
func (q *Queue) headOps(now int64) []clientv3.Op {
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	dueEnd := t + encodeTime(now+1)
	return []clientv3.Op{
		clientv3.OpGet(r, clientv3.WithRange(keys.RangeEnd(r)), clientv3.WithLimit(window)),
		clientv3.OpGet(t, clientv3.WithRange(dueEnd), clientv3.WithLimit(window)),
		clientv3.OpGet(dueEnd, clientv3.WithRange(keys.RangeEnd(t)), clientv3.WithLimit(1), clientv3.WithKeysOnly()),
	}
}

// parseView builds a view from the responses of headOps.
func (q *Queue) parseView(rev, now int64, rs []*pb.ResponseOp) *view {
	v := &view{rev: rev, now: now}
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
	return v
}

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
	now := time.Now().UnixNano()
	resp, err := q.cli.Txn(ctx).Then(q.headOps(now)...).Commit()
	if err != nil {
		return nil, err
	}
	return q.parseView(resp.Header.Revision, now, resp.Responses), nil
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
