package lease

import (
	"context"
	"errors"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchMarker watches the session's marker key, which lives on the lease:
// its deletion means the lease was revoked (or the key deleted by hand,
// which a renewal tells apart), and its puts are this session's own fence
// bumps, whose revisions it learns even when a bump's answer was lost.
// The watch resumes from the last revision it saw, and after a compaction
// or a lost stream it re-reads the key rather than assume anything. A
// read or watch that etcd refuses (the role lost its permission) is
// reported once at error level and not retried: the keepalives still
// guard the lease, and retrying a refusal only hides it.
func (s *Session) watchMarker(ctx context.Context, rev int64) {
	defer s.loopWG.Done()
	backoff := 50 * time.Millisecond
	refused := func(err error) bool {
		if !etcderr.Refused(err) {
			return false
		}
		s.logger.Error("coord session: etcd refused to let the session watch its own marker key; revocations are now seen only at the next renewal",
			"lease", s.LeaseHex(), "key", s.marker, "error", err)
		return true
	}
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		deleted := false
		var werr error
		for resp := range s.cli.Watch(wctx, s.marker, clientv3.WithRev(rev+1)) {
			if werr = resp.Err(); werr != nil {
				break
			}
			for _, ev := range resp.Events {
				rev = ev.Kv.ModRevision
				if ev.Type == clientv3.EventTypeDelete {
					deleted = true
				} else {
					s.advance(ev.Kv.ModRevision)
				}
			}
			if deleted {
				break
			}
		}
		cancel()
		if ctx.Err() != nil || refused(werr) {
			return
		}
		if !deleted {
			// The watch ended without telling us: re-read.
			gctx, gcancel := context.WithTimeout(ctx, s.ttl/3)
			resp, err := s.cli.Get(gctx, s.marker)
			gcancel()
			if refused(err) {
				return
			}
			if err != nil {
				if !sleep(ctx, backoff) {
					return
				}
				backoff = min(backoff*2, time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			rev = resp.Header.Revision
			if len(resp.Kvs) > 0 {
				s.advance(resp.Kvs[0].ModRevision)
				continue
			}
		}
		// The marker is gone. If the lease is gone too, the session is; if
		// someone only deleted the key, put it back (a unary TimeToLive,
		// not a keepalive: a new keepalive stream costs an authentication).
		kctx, kcancel := context.WithTimeout(ctx, s.ttl/3)
		ttl, err := s.cli.TimeToLive(kctx, s.lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && ttl.TTL <= 0) {
			kcancel()
			s.Lose("was revoked")
			return
		}
		if err == nil {
			if put, perr := s.cli.Put(kctx, s.marker, s.owner, clientv3.WithLease(s.lease)); perr == nil {
				rev = put.Header.Revision
				s.advance(rev)
			} else if refused(perr) {
				kcancel()
				return
			}
		}
		kcancel()
		if err != nil && !sleep(ctx, backoff) {
			return
		}
	}
}
