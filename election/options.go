package election

import (
	"log/slog"
	"time"

	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
)

// Option configures Run, and (those that say so) New and NewObserver.
type Option func(*options)

type options struct {
	session   []session.Option
	root      string
	logger    *slog.Logger
	onLeader  func(Leader)
	onStarted func(Leader)
	onStopped func()
	health    *Health
	rule      *Rule
	campaign  []CampaignOption
	delay     time.Duration
}

// WithTTL sets the TTL of the sessions Run campaigns with (default
// session.DefaultTTL): the longest a crashed leader can block its
// successor. A TTL the server would not honour makes Run fail at once.
func WithTTL(d time.Duration) Option {
	return func(o *options) { o.session = append(o.session, session.WithTTL(d)) }
}

// WithPrefix sets the root prefix of the election's keys (default
// "coord/"), as session.WithPrefix does; for Run and NewObserver.
func WithPrefix(root string) Option {
	return func(o *options) {
		o.root = root
		o.session = append(o.session, session.WithPrefix(root))
	}
}

// WithLogger sets where Run, its sessions and its elections log (and an
// Observer). Leadership gained and lost are logged at info and warn level.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
			o.session = append(o.session, session.WithLogger(l))
		}
	}
}

// WithMetrics makes Run's sessions and elections report into m.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *options) { o.session = append(o.session, session.WithMetrics(m)) }
}

// WithRule makes the election follow r (see Rule); for New and Run. The
// first candidate stores it; a candidate whose WithRule differs from the
// stored rule fails to campaign with ErrRuleMismatch. Without WithRule a
// candidate follows whatever rule is stored (FIFO when none).
func WithRule(r Rule) Option { return func(o *options) { o.rule = &r } }

// WithCampaign passes campaign options (WithPriority, WithMeta) to every
// campaign of Run.
func WithCampaign(opts ...CampaignOption) Option {
	return func(o *options) { o.campaign = append(o.campaign, opts...) }
}

// OnLeader makes Run call f with the election's leader as Observe sees
// it: first the current one, then every change, including this replica's
// own leadership and the zero Leader when no one leads. f runs on one
// goroutine, in order; Run returns only after the last call has.
func OnLeader(f func(Leader)) Option { return func(o *options) { o.onLeader = f } }

// OnStartedLeading makes Run call f when this replica starts leading,
// before fn runs, with its leadership (value and token).
func OnStartedLeading(f func(Leader)) Option { return func(o *options) { o.onStarted = f } }

// OnStoppedLeading makes Run call f when this replica stops leading,
// after fn returned, whatever the reason.
func OnStoppedLeading(f func()) Option { return func(o *options) { o.onStopped = f } }

// WithHealth makes Run report into h (see Health).
func WithHealth(h *Health) Option { return func(o *options) { o.health = h } }

// WithLockDelay turns on a lock-delay of d, for New and Run: after a
// leader lost its leadership without resigning (its session's lease
// expired or was revoked, Session.Close included, or a key was deleted by
// someone else), the next leader's Campaign waits d before it returns, so
// that the old leader, which may still be running (paused, partitioned)
// or have writes in flight, has time to stop or land first. A clean
// Resign or Transfer costs nothing: the next leader leads at once, with
// the same requests as without a lock-delay.
//
// The delay is timed by etcd (a lease of d whose expiry the successor
// waits for), never by a client's clock, so d must be whole seconds from
// 1s to 1h, and the wait is at least d (etcd's minimum lease TTL, 2 s
// with its default timing, is a floor), counted from when a candidate
// first saw the loss. A candidate that vanished while waiting (its
// process crashed) counts as a loss too; observers (Follow) never do.
// During the delay the next leader already holds the leader key, so
// Leader and Observe name it while its Campaign still waits. Give every
// candidate of an election the same lock-delay.
func WithLockDelay(d time.Duration) Option { return func(o *options) { o.delay = d } }
