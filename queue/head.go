package queue

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// candidate is an unclaimed message a consumer may try to claim.
type candidate struct {
	key    string // the message key
	part   string // partReady or partTimed
	suffix string // key below the part, also the claim key below c/<part>/
	mod    int64  // the message's mod revision when read
	ord    order
}

// view is one read of the head of the queue: the unclaimed messages in
// the first window of each part, and when the next delayed message is due.
type view struct {
	rev     int64
	now     int64 // unix ns: messages due by then are in the view
	cands   []candidate
	nextDue int64 // unix ns of the earliest message not yet due, 0 if none
	// more[i] says part i (ready, timed) has more messages past a window
	// that is all claimed: page on. lastKey[i] is the window's last key.
	more    [2]bool
	lastKey [2]string
	// readyN counts the ready messages read, claimed or not, for the
	// horizon.
	readyN int
}

// windowOps reads, keys only, the first window of ready messages in
// [fromR, endR) and of due delayed messages from fromT, the claims that can
// hide them, and the first message not yet due. An empty endR reads to the
// end of the part.
//
// etcd counts every key of a range even when asked for a few, so a read
// to the end of a long queue costs the whole backlog; endR bounds it to
// the head seen last time (see horizon).
func (q *Queue) windowOps(now int64, fromR, fromT, endR string) []clientv3.Op {
	r, t := q.sp.Part(partReady), q.sp.Part(partTimed)
	cr, ct := q.claimPrefix(partReady), q.claimPrefix(partTimed)
	endCR := keys.RangeEnd(cr)
	if endR == "" {
		endR = keys.RangeEnd(r)
	} else {
		endCR = cr + strings.TrimPrefix(endR, r)
	}
	dueEnd := t + encodeTime(now+1)
	page := func(from, end string) clientv3.Op {
		return clientv3.OpGet(from, clientv3.WithRange(end), clientv3.WithLimit(window), clientv3.WithKeysOnly())
	}
	return []clientv3.Op{
		page(fromR, endR),
		page(cr+strings.TrimPrefix(fromR, r), endCR),
		page(fromT, dueEnd),
		page(ct+strings.TrimPrefix(fromT, t), keys.RangeEnd(ct)),
		clientv3.OpGet(dueEnd, clientv3.WithRange(keys.RangeEnd(t)), clientv3.WithLimit(1), clientv3.WithKeysOnly()),
	}
}

// headOps reads the head of the queue, bounded by the horizon.
// It also returns the time it took as "now" for due messages.
func (q *Queue) headOps() ([]clientv3.Op, bool, int64) {
	q.mu.Lock()
	end := q.horizon
	q.mu.Unlock()
	now := time.Now().UnixNano()
	return q.windowOps(now, q.sp.Part(partReady), q.sp.Part(partTimed), end), end != "", now
}

// observe moves the horizon after a read of the head: past the last ready
// key of a full window read to the end that had free messages, and back
// to "the end" when a bounded window has been mostly consumed.
func (q *Queue) observe(v *view, bounded bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case !bounded && v.readyN == window && len(v.cands) > 0:
		q.horizon = v.lastKey[0] + "\x00"
	case !bounded, v.readyN < window/2:
		q.horizon = ""
	}
}

func (q *Queue) claimPrefix(part string) string { return q.sp.Part(partClaim) + part + "/" }

// parseView builds a view from the responses of windowOps.
func (q *Queue) parseView(rev, now int64, rs []*pb.ResponseOp) *view {
	v := &view{rev: rev, now: now}
	parts := [2]string{partReady, partTimed}
	for i, part := range parts {
		msgs, claims := rs[2*i].GetResponseRange(), rs[2*i+1].GetResponseRange()
		if i == 0 {
			v.readyN = len(msgs.Kvs)
		}
		prefix, cprefix := q.sp.Part(part), q.claimPrefix(part)
		held := make(map[string]bool, len(claims.Kvs))
		for _, kv := range claims.Kvs {
			held[strings.TrimPrefix(string(kv.Key), cprefix)] = true
		}
		found := 0
		for _, kv := range msgs.Kvs {
			suffix := strings.TrimPrefix(string(kv.Key), prefix)
			if held[suffix] {
				continue
			}
			parse := parseReady
			if part == partTimed {
				parse = parseTimed
			}
			ord, err := parse(suffix)
			if err != nil {
				continue // not a key this package wrote; never claim it
			}
			found++
			v.cands = append(v.cands, candidate{key: string(kv.Key), part: part, suffix: suffix, mod: kv.ModRevision, ord: ord})
		}
		if len(msgs.Kvs) > 0 {
			v.lastKey[i] = string(msgs.Kvs[len(msgs.Kvs)-1].Key)
			v.more[i] = found == 0 && msgs.More
		}
	}
	if kvs := rs[4].GetResponseRange().Kvs; len(kvs) > 0 {
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

// read returns a view with candidates, paging past a head that is all
// claimed, or the first page when there are none.
func (q *Queue) read(ctx context.Context) (*view, error) {
	ops, bounded, now := q.headOps()
	var first *view
	for {
		resp, err := q.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		v := q.parseView(resp.Header.Revision, now, resp.Responses)
		if first == nil {
			q.observe(v, bounded)
			if len(v.cands) == 0 && bounded {
				// Nothing free below the horizon: look at the whole
				// part before calling the queue empty.
				now = time.Now().UnixNano()
				ops = q.windowOps(now, q.sp.Part(partReady), q.sp.Part(partTimed), "")
				bounded = false
				continue
			}
			first = v
		}
		if len(v.cands) > 0 {
			v.nextDue = first.nextDue
			return v, nil
		}
		if !v.more[0] && !v.more[1] {
			return first, nil
		}
		// A page that is all claimed: go on past it. A part with
		// nothing more is read from its last key, which is claimed, so
		// it adds no candidates.
		fromR, fromT := q.sp.Part(partReady), q.sp.Part(partTimed)
		if v.lastKey[0] != "" {
			fromR = v.lastKey[0] + "\x00"
		}
		if v.lastKey[1] != "" {
			fromT = v.lastKey[1] + "\x00"
		}
		now = time.Now().UnixNano()
		ops = q.windowOps(now, fromR, fromT, "")
	}
}

// cacheViews bounds the views kept from Acks for the next Claims.
const cacheViews = 8

// keep stores a view read by an Ack's Txn, so that the next Claim on this
// Queue needs no read of its own: claim + ack is then two Txns.
func (q *Queue) keep(v *view) {
	if len(v.cands) == 0 {
		return // an empty head must be re-read, linearizably, before waiting
	}
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
