package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keepAlive renews the lease every TTL/4 on one long-lived gRPC stream.
//
// Why a stream of our own: clientv3's KeepAliveOnce opens a new stream per
// call, and on an auth-enabled cluster every new stream authenticates
// again (a bcrypt check on the server): a session with a 2 s TTL made 15
// authentications in 8 s, and on a busy server an authentication that
// outlasts the renewal loses the session. clientv3's KeepAlive does share
// one stream, but it hides when each request was sent, and the send time
// is what the deadline must be counted from.
//
// Why the send time: the server restarts its TTL when it receives a
// renewal, never earlier than we sent it, so send + TTL is a lower bound
// on the server's expiry, and the deadline (send + TTL - margin) passes
// before the server can hand what we hold to anyone else. etcd's own
// Session counts from the reply's receipt instead, which is later than the
// server's clock start by the reply's flight time.
//
// The server answers a stream's requests in order, so the n-th answer on
// a stream is for its n-th request. A stream whose oldest request has gone
// unanswered for a whole interval is left behind (its late answers still
// count, matched to their own send times) and a new stream is opened,
// which gRPC may place on another member: a stopped member must not keep
// a session from renewing through the others. A renewal every quarter TTL
// with the deadline a tenth short of the server's rides out a partition of
// half the TTL at any point of the cycle.
func (s *Session) keepAlive(ctx context.Context) {
	defer s.loopWG.Done()
	interval := s.ttl / 4
	retry := max(s.ttl/20, 100*time.Millisecond)
	var old []*renewer // streams left behind that may still answer
	defer func() {
		for _, r := range old {
			r.cancel()
		}
	}()
	// The first renewal is due a quarter TTL into the lease's life, which
	// began when the grant was sent: sooner than a quarter TTL from now
	// when the grant (or the marker's Put) took long to answer, so a
	// session born late into its lease is renewed before that runs out.
	s.mu.Lock()
	first := max(0, s.until(s.deadline)-(s.ttl-s.margin-interval))
	s.mu.Unlock()
	for ctx.Err() == nil {
		r, err := s.openRenewer(ctx)
		if err != nil {
			s.renewalFailed(err)
			if !sleep(ctx, retry) {
				return
			}
			first = 0
			continue
		}
		err = r.run(ctx, first, interval)
		if ctx.Err() != nil {
			r.cancel()
			return
		}
		s.renewalFailed(err)
		old = append(old, r)
		// Forget streams whose answers could no longer extend the deadline.
		keep := old[:0]
		for _, o := range old {
			if o.useful(s.ttl) {
				keep = append(keep, o)
			} else {
				o.cancel()
			}
		}
		old = keep
		if !errors.Is(err, errStuck) && !sleep(ctx, retry) {
			return
		}
		first = 0
	}
}

var errStuck = errors.New("no answer to a renewal within a quarter TTL")

// renewer is one keepalive stream and the send times of its requests not
// yet answered, oldest first.
type renewer struct {
	s      *Session
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
	broken chan error

	mu   sync.Mutex
	sent []time.Time
}

func (s *Session) openRenewer(ctx context.Context) (*renewer, error) {
	sctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	stream, err := pb.NewLeaseClient(s.cli.ActiveConnection()).LeaseKeepAlive(sctx)
	if err != nil {
		cancel()
		return nil, etcderr.Explain(s.cli, err)
	}
	r := &renewer{s: s, stream: stream, cancel: cancel, broken: make(chan error, 1)}
	go r.receive()
	return r, nil
}

// run sends a renewal after first, then every interval, until the stream
// breaks or an answer is overdue.
func (r *renewer) run(ctx context.Context, first, interval time.Duration) error {
	wait := first
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case err := <-r.broken:
				t.Stop()
				return err
			case <-t.C:
			}
		}
		r.mu.Lock()
		stuck := len(r.sent) > 0 && r.s.since(r.sent[0]) >= interval
		if !stuck {
			r.sent = append(r.sent, r.s.now())
		}
		r.mu.Unlock()
		if stuck {
			return errStuck
		}
		if err := r.stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(r.s.lease)}); err != nil {
			return etcderr.Explain(r.s.cli, err)
		}
		wait = interval
	}
}

// receive matches each answer to its request's send time.
func (r *renewer) receive() {
	for {
		resp, err := r.stream.Recv()
		if err != nil {
			r.broken <- etcderr.Explain(r.s.cli, err)
			return
		}
		r.mu.Lock()
		if len(r.sent) == 0 {
			r.mu.Unlock()
			continue // not ours to match; never happens with etcd
		}
		sent := r.sent[0]
		r.sent = r.sent[1:]
		r.mu.Unlock()
		if resp.TTL <= 0 {
			r.s.Lose("is no longer known to the server (revoked or expired)")
			r.broken <- errors.New("lease not found")
			return
		}
		r.s.metrics.KeepAlive(r.s.since(sent))
		r.s.extend(sent.Add(time.Duration(resp.TTL)*time.Second - r.s.margin))
	}
}

// useful reports whether an answer still owed on this stream could move
// the deadline: its request was sent less than a TTL ago.
func (r *renewer) useful(ttl time.Duration) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent) > 0 && r.s.since(r.sent[0]) < ttl
}

func (s *Session) renewalFailed(err error) {
	if err == nil {
		return
	}
	s.metrics.KeepAliveFailed()
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
	if etcderr.Refused(err) {
		// Retried all the same (a token may be refreshed), but never
		// silently: this is a role or password to fix, not a network.
		s.logger.Error("coord session: etcd refused the lease renewal", "lease", s.LeaseHex(), "error", err)
		return
	}
	s.logger.Debug("coord keepalive failed", "lease", s.LeaseHex(), "error", err)
}

// Reachable reports whether etcd is answering the session's renewals:
// the session is alive, no renewal failed since the last acknowledged
// one, and that one was sent less than one and a half renewal intervals
// (TTL/4 each) ago, so an answer overdue by half an interval counts as
// unreachable. It reads only what the keepalive stream already learned:
// no request is made.
func (s *Session) Reachable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.lastErr != nil {
		return false
	}
	renewed := s.deadline.Add(-(s.ttl - s.margin))
	return time.Since(renewed) < s.ttl/4*3/2
}

func (s *Session) extend(deadline time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || !deadline.After(s.deadline) {
		return
	}
	s.deadline = deadline
	s.lastErr = nil
	s.timer.Reset(s.until(deadline))
}

// checkDeadline runs when the timer fires: unless a keepalive moved the
// deadline meanwhile, the lease can no longer be trusted.
func (s *Session) checkDeadline() {
	s.mu.Lock()
	left := s.until(s.deadline)
	if s.err == nil && left > 0 {
		s.timer.Reset(left)
	}
	last := s.lastErr
	s.mu.Unlock()
	if left <= 0 {
		why := "was not renewed in time (no keepalive acknowledged within the TTL)"
		if last != nil {
			why += fmt.Sprintf("; last renewal error: %v", last)
		}
		s.Lose(why)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
