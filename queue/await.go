package queue

import (
	"context"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// await blocks until a message may have become claimable since view v
// was read: one was enqueued, nacked or re-driven, a claim was released
// without its message going (a consumer died), or the next delayed
// message is due. It returns a fresh view, or nil to ask for one.
//
// It follows internal/wait's rules (a watch opened from now and
// confirmed by the server, a re-read when it starts after v, a re-read
// after any broken watch) but cannot use wait.Until: it must tell one
// kind of event from another. An Ack deletes a claim and its message in
// one revision and frees nothing, and with many idle consumers every Ack
// by a busy one would otherwise wake them all to read the head.
func (q *Queue) await(ctx context.Context, s *session.Session, v *view) (*view, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if v.nextDue > 0 {
		var dcancel context.CancelFunc
		wctx, dcancel = context.WithDeadline(wctx, unixTime(v.nextDue))
		defer dcancel()
	}
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-wctx.Done():
		}
	}()
	ended := func() (*view, error) {
		switch {
		case s.Err() != nil:
			return nil, s.Err()
		case ctx.Err() != nil:
			return nil, ctx.Err()
		}
		return nil, nil // the next delayed message is due: read again
	}
	base := q.sp.Base()
	since := v.rev
	pause := 10 * time.Millisecond
	for {
		wc, wcancel := context.WithCancel(clientv3.WithRequireLeader(wctx))
		wch := q.cli.Watch(wc, base, clientv3.WithRange(keys.RangeEnd(base)), clientv3.WithCreatedNotify())
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case resp, ok = <-wch:
		case <-wctx.Done():
			wcancel()
			return ended()
		}
		if !ok || resp.Err() != nil || !resp.Created {
			wcancel()
			if !sleep(wctx, &pause) {
				return ended()
			}
			continue
		}
		need := resp.Header.Revision > since
		for broken := false; !broken; {
			if need {
				nv, err := q.read(wctx)
				switch {
				case err != nil && wctx.Err() != nil:
					wcancel()
					return ended()
				case err != nil && wait.Transient(err):
					if !sleep(wctx, &pause) {
						wcancel()
						return ended()
					}
					continue
				case err != nil:
					wcancel()
					return nil, err
				}
				if len(nv.cands) > 0 || (nv.nextDue != 0 && (v.nextDue == 0 || nv.nextDue < v.nextDue)) {
					wcancel()
					return nv, nil
				}
				since, need = nv.rev, false
				pause = 10 * time.Millisecond
			}
			select {
			case <-wctx.Done():
				wcancel()
				return ended()
			case resp, ok := <-wch:
				if !ok || resp.Canceled || resp.Err() != nil {
					broken = true // reopened from now, which re-reads first
					continue
				}
				need = q.frees(resp.Events, since)
			}
		}
		wcancel()
	}
}

// frees reports whether events newer than since may have freed a
// message: a message put (enqueued, nacked, re-driven), or a claim
// deleted while its message stayed (its lease ended, or a Claim was
// cancelled). etcd sends all events of one revision together, so an Ack's
// two deletes are seen side by side.
func (q *Queue) frees(events []*clientv3.Event, since int64) bool {
	r, t, c := q.sp.Part(partReady), q.sp.Part(partTimed), q.sp.Part(partClaim)
	type at struct {
		key string
		rev int64
	}
	var released []at
	gone := map[at]bool{}
	for _, ev := range events {
		if ev.Kv.ModRevision <= since {
			continue
		}
		k := string(ev.Kv.Key)
		switch {
		case ev.Type == clientv3.EventTypePut && (strings.HasPrefix(k, r) || strings.HasPrefix(k, t)):
			return true
		case ev.Type == clientv3.EventTypeDelete && strings.HasPrefix(k, c):
			// c/<part>/<suffix> hides <part>/<suffix>.
			released = append(released, at{q.sp.Base() + strings.TrimPrefix(k, c), ev.Kv.ModRevision})
		case ev.Type == clientv3.EventTypeDelete:
			gone[at{k, ev.Kv.ModRevision}] = true
		}
	}
	for _, m := range released {
		if !gone[m] {
			return true
		}
	}
	return false
}

// sleep waits for *d (then doubles it, up to 500ms); false if ctx ended.
func sleep(ctx context.Context, d *time.Duration) bool {
	t := time.NewTimer(*d)
	defer t.Stop()
	*d = min(2**d, 500*time.Millisecond)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
