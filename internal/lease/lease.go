package lease

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

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/span"
	"github.com/coord-go/coord/metrics"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
)

// ErrExpired is session.ErrExpired.
var ErrExpired = errors.New("session: lease expired")

// ErrClosed is session.ErrClosed.
var ErrClosed = errors.New("session: closed")

// ErrInvalid is session.ErrInvalid.
var ErrInvalid = errors.New("session: invalid argument")

// closeTimeout bounds Close's revoke, whatever the caller's state.
const closeTimeout = 5 * time.Second

// Config is what session.New was given.
type Config struct {
	TTL     time.Duration
	Root    string
	Logger  *slog.Logger
	Metrics *metrics.Metrics

	// now replaces time.Now for the deadline, in tests that move the
	// wall clock (see clock.go); nil is time.Now.
	now func() time.Time
	// Tracer, when not nil, is where the session's primitives start
	// their spans (session.WithTracerProvider).
	Tracer trace.TracerProvider
}

// Session is the implementation of session.Session: one lease, renewed
// on one long-lived keepalive stream, and the fence that turns away
// creates delivered after their caller gave up.
type Session struct {
	cli     *clientv3.Client
	lease   clientv3.LeaseID
	ttl     time.Duration // as granted by the server
	margin  time.Duration
	root    string
	marker  string
	owner   string // the marker's value: host:pid
	logger  *slog.Logger
	metrics *metrics.Metrics
	now     func() time.Time // time.Now, or a test's clock
	tracer  trace.Tracer     // nil: tracing is off
	seq     atomic.Uint64
	fence   atomic.Int64 // the marker's mod revision every create compares

	stop   context.CancelFunc // ends the background loops
	alive  context.Context    // the loops' context: ends right after done closes
	loopWG sync.WaitGroup

	mu       sync.Mutex
	err      error
	done     chan struct{}
	deadline time.Time   // the lease is trusted until then
	timer    *time.Timer // fires at deadline
	lastErr  error       // the last renewal failure, for the loss message

	closeOnce sync.Once
	closeErr  error
}

// New grants a lease and starts keeping it alive.
func New(ctx context.Context, cli *clientv3.Client, cfg Config) (*Session, error) {
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrInvalid)
	}
	root, err := keys.NormalizeRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// etcd leases count whole seconds; round up so the caller never gets
	// less than asked for.
	secs := int64((cfg.TTL + time.Second - 1) / time.Second)
	if cfg.now == nil {
		cfg.now = time.Now
	}
	sent := cfg.now()
	grant, err := cli.Grant(ctx, secs)
	if err != nil {
		return nil, fmt.Errorf("session: grant lease: %w", etcderr.Explain(cli, err))
	}
	if grant.TTL != secs {
		// The server raises a TTL below its minimum (1.5 × its election
		// timeout) without saying so; a session that believed its shorter
		// TTL would be wrong about when its lease expires.
		revoke(cli, grant.ID)
		return nil, fmt.Errorf("%w: TTL %v is below the server's minimum lease TTL of %ds", ErrInvalid, cfg.TTL, grant.TTL)
	}
	host, _ := os.Hostname()
	s := &Session{
		cli:     cli,
		lease:   grant.ID,
		ttl:     time.Duration(grant.TTL) * time.Second,
		root:    root,
		owner:   host + ":" + strconv.Itoa(os.Getpid()),
		logger:  cfg.Logger,
		metrics: cfg.Metrics,
		now:     cfg.now,
		done:    make(chan struct{}),
	}
	if cfg.Tracer != nil {
		s.tracer = cfg.Tracer.Tracer(span.Scope)
	}
	s.margin = min(max(s.ttl/10, 100*time.Millisecond), time.Second)
	s.marker = root + keys.KindSession + "/" + fmt.Sprintf("%016x", int64(grant.ID))
	s.deadline = sent.Add(s.ttl - s.margin)

	// The marker key lives on the lease: its deletion tells us at once that
	// the lease was revoked, its value tells operators whose lease it is,
	// and its mod revision is the fence every create of this session
	// compares (see Fence).
	put, err := cli.Put(ctx, s.marker, s.owner, clientv3.WithLease(grant.ID))
	if err != nil {
		revoke(cli, grant.ID)
		return nil, fmt.Errorf("session: register: %w", etcderr.Explain(cli, err))
	}
	s.fence.Store(put.Header.Revision)
	// Reported alive before anything can end it, so SessionEnded always
	// comes after.
	s.metrics.SessionStarted(s.LeaseHex(), s.Reachable)
	loopCtx, stop := context.WithCancel(context.Background())
	s.stop, s.alive = stop, loopCtx
	s.mu.Lock()
	s.timer = time.AfterFunc(s.until(s.deadline), s.checkDeadline)
	s.mu.Unlock()
	s.loopWG.Add(3)
	go s.keepAlive(loopCtx)
	go s.watchMarker(loopCtx, put.Header.Revision)
	go s.watchClient(loopCtx)
	s.logger.Debug("coord session started", "lease", s.LeaseHex(), "ttl", s.ttl)
	return s, nil
}

func revoke(cli *clientv3.Client, id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	cli.Revoke(ctx, id)
}

// Client returns the etcd client the session was made with.
func (s *Session) Client() *clientv3.Client { return s.cli }

// Lease returns the session's lease id.
func (s *Session) Lease() clientv3.LeaseID { return s.lease }

// LeaseHex is the lease id as logs and keys show it.
func (s *Session) LeaseHex() string { return fmt.Sprintf("%016x", int64(s.lease)) }

// TTL returns the lease TTL the server granted.
func (s *Session) TTL() time.Duration { return s.ttl }

// Root returns the root prefix, ending in '/'.
func (s *Session) Root() string { return s.root }

// Owner returns host:pid, as the marker records it.
func (s *Session) Owner() string { return s.owner }

// Logger returns the session's logger.
func (s *Session) Logger() *slog.Logger { return s.logger }

// Metrics returns the session's metrics, or nil.
func (s *Session) Metrics() *metrics.Metrics { return s.metrics }

// Tracer returns the tracer the session's primitives start their spans
// with, or nil when tracing is off (see package span).
func (s *Session) Tracer() trace.Tracer { return s.tracer }

// NextID returns an id no other key of this session uses.
func (s *Session) NextID() string { return keys.ID(int64(s.lease), s.seq.Add(1)) }

// Done returns a channel closed when the session ends.
func (s *Session) Done() <-chan struct{} { return s.done }

// Bound returns a context that ends when ctx does or when the session
// ends, whichever is first, and its cancel (call it when done). Unlike a
// goroutine that selects on Done, it costs nothing while both live, so a
// waiter far back in a long line holds no goroutine for it.
func (s *Session) Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithCancel(ctx)
	stop := s.AfterEnd(cancel)
	return bctx, func() {
		stop()
		cancel()
	}
}

// AfterEnd arranges for f to run in a goroutine of its own once the
// session has ended (Err is set by then), and returns the function that
// cancels that (true if it stopped f from running). Nothing runs until
// the session ends.
func (s *Session) AfterEnd(f func()) (stop func() bool) { return context.AfterFunc(s.alive, f) }

// Err returns nil while the session is alive, else why it ended.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Vouch returns nil if the session can vouch for its lease now: it has
// not ended and its deadline has not passed. A deadline that passed ends
// the session here, without waiting for its timer (which may fire late on
// a starved machine), so the answer never outlives the lease.
func (s *Session) Vouch() error {
	s.mu.Lock()
	err, left := s.err, s.until(s.deadline)
	s.mu.Unlock()
	if err == nil && left <= 0 {
		s.checkDeadline()
		err = s.Err()
	}
	return err
}

// Deadline returns the time until which the lease is known to be alive.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Renewed returns the send time of the last acknowledged renewal (or of
// the grant): the deadline less the TTL and the margin.
func (s *Session) Renewed() time.Time {
	return s.Deadline().Add(-(s.ttl - s.margin))
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
	s.mu.Unlock()
	// The series says so before Done fires: whoever sees the end sees it
	// reported. (Outside s.mu: a scrape reads the session under the
	// metrics' own lock.)
	s.metrics.SessionEnded(s.LeaseHex())
	close(s.done)
	s.stop()
	return true
}

// Lose ends the session because its lease can no longer be trusted, and
// revokes the lease in the background so that nothing waits a TTL for
// keys that this process has already given up.
func (s *Session) Lose(why string) {
	if !s.end(fmt.Errorf("%w: lease %x %s", ErrExpired, int64(s.lease), why)) {
		return
	}
	s.metrics.SessionLost()
	s.logger.Warn("coord session lost", "lease", s.LeaseHex(), "error", why)
	go revoke(s.cli, s.lease)
}

// Close revokes the lease and ends the session; see session.Close.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		alive := s.end(ErrClosed)
		s.loopWG.Wait()
		if !alive {
			// Lost already: Lose started the revoke in the background, and
			// the network may be what lost it, so do not wait on it here.
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		_, err := s.cli.Revoke(ctx, s.lease)
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.closeErr = fmt.Errorf("session: revoke lease %x: %w", int64(s.lease), etcderr.Explain(s.cli, err))
		}
		s.logger.Debug("coord session closed", "lease", s.LeaseHex())
	})
	return s.closeErr
}

// Verify asks the server whether the lease still exists, for a holder
// that found its own key gone: if the lease is gone too, the session is
// lost (and Verify says so, wrapping ErrExpired) rather than the key
// deleted by someone. It returns nil when the lease is alive or the
// question cannot be answered now.
func (s *Session) Verify(ctx context.Context) error {
	if err := s.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.ttl/3)
	defer cancel()
	resp, err := s.cli.TimeToLive(ctx, s.lease)
	switch {
	case errors.Is(err, rpctypes.ErrLeaseNotFound), err == nil && resp.TTL <= 0:
		s.Lose("is no longer known to the server (revoked or expired)")
		return s.Err()
	case err != nil:
		return nil
	}
	return nil
}

// watchClient ends the session when its etcd client is closed: nothing
// the session holds can be renewed, released or verified through it any
// more, and every wait on it would otherwise spin on closed channels
// until the deadline.
func (s *Session) watchClient(ctx context.Context) {
	defer s.loopWG.Done()
	select {
	case <-s.cli.Ctx().Done():
		s.Lose("cannot be renewed: its etcd client was closed")
	case <-ctx.Done():
	}
}
