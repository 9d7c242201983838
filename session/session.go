package session

import (
	"context"
	"log/slog"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/metrics"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ErrExpired is wrapped by Err, and by the errors of every primitive built
// on the session, once the session's lease is lost: it expired, was
// revoked, could not be renewed in time to be trusted, or its etcd client
// was closed.
var ErrExpired = lease.ErrExpired

// ErrClosed is returned by Err after Close, and wrapped by the errors of
// primitives used after it.
var ErrClosed = lease.ErrClosed

// ErrInvalid is wrapped by the errors New returns for bad arguments: a nil
// client, a TTL the server would not honour, an empty or reserved root
// prefix.
var ErrInvalid = lease.ErrInvalid

// ErrNoSpace is wrapped by the errors of the session and of every
// primitive built on it when etcd refused a write for want of space: the
// server's NOSPACE alarm is raised (its database reached
// --quota-backend-bytes). No retry cures it, so none is made: the call
// fails at once. Only writes that need space fail; deletes and reads go
// on, and so do the session's keepalives, so what is held stays held and
// no Done closes for it. Once an operator compacts, defragments and
// disarms the alarm, the same sessions and primitives work again.
var ErrNoSpace = etcderr.ErrNoSpace

// DefaultTTL is the lease TTL when WithTTL is not given.
const DefaultTTL = 15 * time.Second

// Session is one etcd lease kept alive in the background, on one
// long-lived keepalive stream. Everything a primitive holds is attached
// to it, so everything goes when the session ends: on Close at once, on a
// crash after the TTL. One per process is the usual shape: every lock,
// leadership, permit and queue claim of the process shares it.
//
// A Session is safe for concurrent use.
type Session struct{ l *lease.Session }

func init() {
	lease.Register(func(x any) *lease.Session {
		if s, ok := x.(*Session); ok && s != nil {
			return s.l
		}
		return nil
	})
}

// New grants a lease and starts keeping it alive. ctx bounds only the
// grant; the session lives until Close or until its lease is lost. It
// returns an error wrapping ErrInvalid for a nil client, a TTL under one
// second or under the server's minimum (which etcd would otherwise raise
// silently), and an empty or reserved root prefix.
func New(ctx context.Context, cli *clientv3.Client, opts ...Option) (*Session, error) {
	o := options{ttl: DefaultTTL, root: keys.DefaultRoot}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	l, err := lease.New(ctx, cli, lease.Config{TTL: o.ttl, Root: o.root, Logger: o.logger, Metrics: o.metrics, Tracer: o.tracer})
	if err != nil {
		return nil, err
	}
	return &Session{l: l}, nil
}

// Client returns the etcd client the session was made with.
func (s *Session) Client() *clientv3.Client { return s.l.Client() }

// Lease returns the session's lease id.
func (s *Session) Lease() clientv3.LeaseID { return s.l.Lease() }

// TTL returns the lease TTL the server granted.
func (s *Session) TTL() time.Duration { return s.l.TTL() }

// Prefix returns the root prefix under which primitives on this session
// keep their keys, always ending in '/'.
func (s *Session) Prefix() string { return s.l.Root() }

// Logger returns the session's logger (a silent one by default).
func (s *Session) Logger() *slog.Logger { return s.l.Logger() }

// Metrics returns the session's metrics, or nil.
func (s *Session) Metrics() *metrics.Metrics { return s.l.Metrics() }

// Tracer returns the tracer the session's primitives start their spans
// with (instrumentation scope "github.com/coord-go/coord"), from the
// provider given to WithTracerProvider; without one, a no-op tracer.
func (s *Session) Tracer() trace.Tracer {
	if t := s.l.Tracer(); t != nil {
		return t
	}
	return noop.NewTracerProvider().Tracer("")
}

// NextID returns an id no other key of this session uses: the lease in
// 16 hex digits and a sequence number. Primitives name their keys with it,
// so two holders on one session never share a key.
func (s *Session) NextID() string { return s.l.NextID() }

// Done returns a channel closed when the session ends: its lease was lost
// or Close was called. It closes no later than the moment the server
// could expire the lease, so a holder learns of the loss before anyone
// else can be granted what it held.
func (s *Session) Done() <-chan struct{} { return s.l.Done() }

// Err returns nil while the session is alive; after Done it returns an
// error wrapping ErrExpired (saying whether the lease was revoked,
// expired, could not be renewed in time, or lost its client) or ErrClosed.
func (s *Session) Err() error { return s.l.Err() }

// Deadline returns the time until which the lease is known to be alive:
// the send time of the last acknowledged renewal plus the TTL, less a
// safety margin. The session ends itself at this time unless a newer
// renewal is acknowledged first.
func (s *Session) Deadline() time.Time { return s.l.Deadline() }

// Close revokes the lease, so everything the session holds is released
// now rather than after the TTL, and ends the session. It uses its own
// bounded timeout, so it works even when the caller's context is already
// cancelled. On a session already lost it returns at once: the loss
// already started a revoke in the background, and the network that lost
// it may still be down. Calling it again returns the first call's result.
// A deliberate Close is logged at debug level only: it is not a loss.
func (s *Session) Close() error { return s.l.Close() }
