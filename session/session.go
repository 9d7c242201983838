package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/metrics"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrExpired is wrapped by Err, and by the errors of every primitive built
// on the session, once the session's lease is lost: it expired, was
// revoked, or could not be renewed in time to be trusted.
var ErrExpired = errors.New("session: lease expired")

// ErrClosed is returned by Err after Close, and wrapped by the errors of
// primitives used after it.
var ErrClosed = errors.New("session: closed")

// ErrInvalid is wrapped by the errors New returns for bad arguments: a nil
// client, a TTL the server would not honour, an empty root prefix.
var ErrInvalid = errors.New("session: invalid argument")

const (
	// DefaultTTL is the lease TTL when WithTTL is not given.
	DefaultTTL = 15 * time.Second
	// closeTimeout bounds Close's revoke, whatever the caller's state.
	closeTimeout = 5 * time.Second
)

// Session is one etcd lease kept alive in the background. Everything a
// primitive holds is attached to it, so everything goes when the session
// ends: on Close at once, on a crash after the TTL.
//
// A Session is safe for concurrent use.
type Session struct {
	cli     *clientv3.Client
	lease   clientv3.LeaseID
	ttl     time.Duration // as granted by the server
	margin  time.Duration
	root    string
	marker  string
	logger  *slog.Logger
	metrics *metrics.Metrics
	seq     atomic.Uint64

	stop   context.CancelFunc // ends the background loops
	loopWG sync.WaitGroup

	mu       sync.Mutex
	err      error
	done     chan struct{}
	deadline time.Time   // the lease is trusted until then
	timer    *time.Timer // fires at deadline

	closeOnce sync.Once
	closeErr  error
}

// New grants a lease and starts keeping it alive. ctx bounds only the
// grant; the session lives until Close or until its lease is lost.
func New(ctx context.Context, cli *clientv3.Client, opts ...Option) (*Session, error) {
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrInvalid)
	}
	o := options{ttl: DefaultTTL, root: keys.DefaultRoot, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	root, err := keys.NormalizeRoot(o.root)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// etcd leases count whole seconds; round up so the caller never gets
	// less than asked for.
	secs := int64((o.ttl + time.Second - 1) / time.Second)
	sent := time.Now()
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("session: grant lease: %w", err)
	}
	if grant.TTL != secs {
		// The server raises a TTL below its minimum (1.5 × its election
		// timeout) without saying so; a session that believed its shorter
		// TTL would be wrong about when its lease expires.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		cli.Revoke(rctx, grant.ID)
		cancel()
		return nil, fmt.Errorf("%w: TTL %v is below the server's minimum lease TTL of %ds", ErrInvalid, o.ttl, grant.TTL)
	}
	s := &Session{
		cli:     cli,
		lease:   grant.ID,
		ttl:     time.Duration(grant.TTL) * time.Second,
		root:    root,
		logger:  o.logger,
		metrics: o.metrics,
		done:    make(chan struct{}),
	}
	s.margin = min(max(s.ttl/10, 100*time.Millisecond), time.Second)
	s.marker = root + keys.KindSession + "/" + fmt.Sprintf("%016x", int64(grant.ID))
	s.deadline = sent.Add(s.ttl - s.margin)

	// The marker key lives on the lease, so its deletion tells us at once
	// that the lease was revoked, instead of at the next keepalive.
	put, err := cli.Put(ctx, s.marker, markerValue(), clientv3.WithLease(grant.ID))
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		cli.Revoke(rctx, grant.ID)
		cancel()
		return nil, fmt.Errorf("session: register: %w", err)
	}
	// A grant that took most of the TTL to come back leaves a lease we can
	// trust only briefly; renew once now rather than hand out a session
	// that is about to end.
	if time.Until(s.deadline) < s.ttl/2 {
		sent := time.Now()
		if ka, err := cli.KeepAliveOnce(ctx, grant.ID); err == nil && ka.TTL > 0 {
			s.deadline = sent.Add(time.Duration(ka.TTL)*time.Second - s.margin)
		}
	}
	loopCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.mu.Lock()
	s.timer = time.AfterFunc(time.Until(s.deadline), s.checkDeadline)
	s.mu.Unlock()
	s.loopWG.Add(2)
	go s.keepAlive(loopCtx)
	go s.watchMarker(loopCtx, put.Header.Revision)
	s.logger.Debug("coord session started", "lease", fmt.Sprintf("%x", int64(s.lease)), "ttl", s.ttl)
	return s, nil
}

func markerValue() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// Client returns the etcd client the session was made with.
func (s *Session) Client() *clientv3.Client { return s.cli }

// Lease returns the session's lease id.
func (s *Session) Lease() clientv3.LeaseID { return s.lease }

// TTL returns the lease TTL the server granted.
func (s *Session) TTL() time.Duration { return s.ttl }

// Prefix returns the root prefix under which primitives on this session
// keep their keys, always ending in '/'.
func (s *Session) Prefix() string { return s.root }

// Logger returns the session's logger (a silent one by default).
func (s *Session) Logger() *slog.Logger { return s.logger }

// Metrics returns the session's metrics, or nil.
func (s *Session) Metrics() *metrics.Metrics { return s.metrics }

// NextID returns an id no other key of this session uses: the lease in
// 16 hex digits and a sequence number. Primitives name their keys with it,
// so two holders on one session never share a key.
func (s *Session) NextID() string { return keys.ID(int64(s.lease), s.seq.Add(1)) }

// Done returns a channel closed when the session ends: its lease was lost
// or Close was called. It closes no later than the moment the server
// could expire the lease, so a holder learns of the loss before anyone
// else can be granted what it held.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns nil while the session is alive; after Done it returns an
// error wrapping ErrExpired (saying whether the lease was revoked,
// expired, or could not be renewed in time) or ErrClosed.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Deadline returns the time until which the lease is known to be alive:
// the send time of the last acknowledged keepalive plus the TTL, less a
// safety margin. The session ends itself at this time unless a newer
// keepalive is acknowledged first.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// end records why the session ended, once, and closes Done.
func (s *Session) end(err error) bool {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return false
	}
	s.err = err
	s.timer.Stop()
	close(s.done)
	s.mu.Unlock()
	s.stop()
	return true
}

// lose ends the session because its lease can no longer be trusted, and
// revokes the lease in the background so that nothing waits a TTL for
// keys that this process has already given up.
func (s *Session) lose(why string) {
	if !s.end(fmt.Errorf("%w: lease %x %s", ErrExpired, int64(s.lease), why)) {
		return
	}
	s.metrics.SessionLost()
	s.logger.Warn("coord session lost", "lease", fmt.Sprintf("%x", int64(s.lease)), "reason", why)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		s.cli.Revoke(ctx, s.lease)
	}()
}

// Close revokes the lease, so everything the session holds is released
// now rather than after the TTL, and ends the session. It uses its own
// bounded timeout, so it works even when the caller's context is already
// cancelled. On a session already lost it returns at once: the loss
// already started a revoke in the background, and the network that lost
// it may still be down. Calling it again returns the first call's result.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		alive := s.end(ErrClosed)
		s.loopWG.Wait()
		if !alive {
			// Lost already: lose started the revoke in the background, and
			// the network may be what lost it, so do not wait on it here.
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_, err := s.cli.Revoke(ctx, s.lease)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.closeErr = fmt.Errorf("session: revoke lease %x: %w", int64(s.lease), err)
		}
		s.logger.Debug("coord session closed", "lease", fmt.Sprintf("%x", int64(s.lease)))
	})
	return s.closeErr
}
