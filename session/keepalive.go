package session

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keepAlive renews the lease every TTL/4 (etcd's Session uses TTL/3): with
// the deadline a tenth of the TTL short of the server's, a renewal every
// quarter TTL lets a session ride out a partition of half its TTL at any
// point of its cycle with margin to spare. Each renewal's *send* time is
// what extends the deadline: the server restarts its TTL when it receives
// the request, which is never earlier than we sent it, so send + TTL is a
// lower bound on the server's expiry. etcd's own Session counts from the
// reply's receipt instead, which is later than the server's clock start
// by the reply's flight time, and so it can believe in a lease the server
// has already expired.
func (s *Session) keepAlive(ctx context.Context) {
	defer s.loopWG.Done()
	interval := s.ttl / 4
	retry := max(s.ttl/20, 100*time.Millisecond)
	next := interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(next):
		}
		sent := time.Now()
		// Never wait past the point where the answer could still help.
		until := sent.Add(interval)
		if d := s.Deadline(); d.Before(until) {
			until = d
		}
		rctx, cancel := context.WithDeadline(ctx, until)
		resp, err := s.cli.KeepAliveOnce(rctx, s.lease)
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			s.lose("is no longer known to the server (revoked or expired)")
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			s.metrics.KeepAliveFailed()
			s.logger.Debug("coord keepalive failed", "error", err)
			next = retry
			continue
		case resp.TTL <= 0:
			s.lose("expired on the server")
			return
		}
		s.metrics.KeepAlive(time.Since(sent))
		s.extend(sent.Add(time.Duration(resp.TTL)*time.Second - s.margin))
		next = interval
	}
}

func (s *Session) extend(deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || !deadline.After(s.deadline) {
		return
	}
	s.deadline = deadline
	s.timer.Reset(time.Until(deadline))
}

// checkDeadline runs when the timer fires: unless a keepalive moved the
// deadline meanwhile, the lease can no longer be trusted.
func (s *Session) checkDeadline() {
	s.mu.Lock()
	left := time.Until(s.deadline)
	if s.err == nil && left > 0 {
		s.timer.Reset(left)
	}
	s.mu.Unlock()
	if left <= 0 {
		s.lose("was not renewed in time (no keepalive acknowledged within the TTL)")
	}
}

// watchMarker watches the session's marker key, which lives on the lease:
// its deletion means the lease was revoked (or the key deleted by hand,
// which a keepalive tells apart). The watch resumes from the last revision
// it saw, and after a compaction or a lost stream it re-reads the key
// rather than assume anything.
func (s *Session) watchMarker(ctx context.Context, rev int64) {
	defer s.loopWG.Done()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		deleted := false
		for resp := range s.cli.Watch(wctx, s.marker, clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				rev = ev.Kv.ModRevision
				if ev.Type == clientv3.EventTypeDelete {
					deleted = true
				}
			}
			if deleted {
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if !deleted {
			// The watch ended without telling us: re-read.
			gctx, gcancel := context.WithTimeout(ctx, s.ttl/3)
			resp, err := s.cli.Get(gctx, s.marker)
			gcancel()
			if err != nil {
				time.Sleep(backoff)
				backoff = min(backoff*2, time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			rev = resp.Header.Revision
			if len(resp.Kvs) > 0 {
				continue
			}
		}
		// The marker is gone. If the lease is gone too, the session is;
		// if someone only deleted the key, put it back.
		kctx, kcancel := context.WithTimeout(ctx, s.ttl/3)
		_, err := s.cli.KeepAliveOnce(kctx, s.lease)
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			kcancel()
			s.lose("was revoked")
			return
		}
		if err == nil {
			if put, perr := s.cli.Put(kctx, s.marker, markerValue(), clientv3.WithLease(s.lease)); perr == nil {
				rev = put.Header.Revision
			}
		}
		kcancel()
	}
}
