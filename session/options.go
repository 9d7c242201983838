package session

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/coord-go/coord/metrics"
	"go.opentelemetry.io/otel/trace"
)

// Option configures New.
type Option func(*options)

type options struct {
	ttl     time.Duration
	root    string
	logger  *slog.Logger
	metrics *metrics.Metrics
	tracer  trace.TracerProvider
	err     error
}

// WithTTL sets the lease TTL (default 15s). etcd counts whole seconds, so
// a fraction is rounded up; a TTL under one second, or under the server's
// minimum, makes New fail.
func WithTTL(d time.Duration) Option {
	return func(o *options) {
		if d < time.Second {
			o.err = fmt.Errorf("%w: TTL %v is under one second, the smallest lease etcd grants", ErrInvalid, d)
		}
		o.ttl = d
	}
}

// WithPrefix sets the root prefix of every key made through the session
// (default "coord/"); a '/' is appended when missing. No segment of it
// may be one of coord's kinds ("lock", "queue", ...), so that no root can
// lie inside another's keyspace. Queues, barriers and latches, which are
// built on a client, take the same root from queue.WithPrefix and
// barrier.WithPrefix, and refuse a session of another root where the two
// meet (Claim, HoldWith). On a shared cluster, an etcd namespace on the
// client (go.etcd.io/etcd/client/v3/namespace) moves everything at once.
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// WithLogger sets where the session and the primitives on it log. Only
// the moments that matter (a session, lock or leadership lost) are logged
// above debug level. By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithMetrics makes the session, and every primitive on it, report into m.
func WithMetrics(m *metrics.Metrics) Option { return func(o *options) { o.metrics = m } }

// WithTracerProvider makes the primitives on the session trace what they
// wait for and hold through tp: a span from a Lock, Acquire or Campaign
// call until it is granted or fails, one from the grant until the release
// or the loss, one per queue claim and one per handled message, with the
// name, the fencing token and the outcome as attributes (see the package
// doc). No global provider is ever read: without this option, or with a
// nil tp, nothing is traced and the primitives pay one nil check.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracer = tp }
}
