package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Option configures Run.
type Option func(*runOptions)

type runOptions struct {
	session  []session.Option
	root     string
	logger   *slog.Logger
	onLeader func(Leader)
}

// WithTTL sets the TTL of the sessions Run campaigns with (default
// session.DefaultTTL): the longest a crashed leader can block its
// successor. A TTL the server would not honour makes Run fail at once.
func WithTTL(d time.Duration) Option {
	return func(o *runOptions) { o.session = append(o.session, session.WithTTL(d)) }
}

// WithPrefix sets the root prefix of the election's keys (default
// "coord/"), as session.WithPrefix does.
func WithPrefix(root string) Option {
	return func(o *runOptions) {
		o.root = root
		o.session = append(o.session, session.WithPrefix(root))
	}
}

// WithLogger sets where Run, its sessions and its elections log.
// Leadership gained and lost are logged at info and warn level.
func WithLogger(l *slog.Logger) Option {
	return func(o *runOptions) {
		if l != nil {
			o.logger = l
			o.session = append(o.session, session.WithLogger(l))
		}
	}
}

// WithMetrics makes Run's sessions and elections report into m.
func WithMetrics(m *metrics.Metrics) Option {
	return func(o *runOptions) { o.session = append(o.session, session.WithMetrics(m)) }
}

// OnLeader makes Run call f with the election's leader as Observe sees
// it: first the current one, then every change, including this replica's
// own leadership and the zero Leader when no one leads. f runs on one
// goroutine, in order; Run returns only after the last call has.
func OnLeader(f func(Leader)) Option { return func(o *runOptions) { o.onLeader = f } }

type termKey struct{}

type termInfo struct {
	token int64
	owner clientv3.Cmp
}

// TokenFrom returns the fencing token of the leadership whose fn ctx it
// is given, so that fn can fence the writes it makes outside etcd.
func TokenFrom(ctx context.Context) (int64, bool) {
	t, ok := ctx.Value(termKey{}).(termInfo)
	return t.token, ok
}

// OwnerFrom returns the IsOwner guard of the leadership whose fn ctx it is
// given, so that fn can make its own etcd Txns conditional on still
// leading.
func OwnerFrom(ctx context.Context) (clientv3.Cmp, bool) {
	t, ok := ctx.Value(termKey{}).(termInfo)
	return t.owner, ok
}

const (
	runRetryMin = 100 * time.Millisecond
	runRetryMax = 5 * time.Second
)

// Run is the loop a service embeds to do work only while it leads.
// It creates a session, campaigns for name with value, and calls fn with
// a ctx that is cancelled the moment the leadership is lost (TokenFrom
// gives fn its fencing token). When fn returns, Run resigns and closes
// the session, so a successor leads within one round trip rather than a
// TTL. After a loss, or when fn returns nil, it campaigns again with a
// fresh session after a short backoff. fn is never called again before
// its previous call has returned.
//
// Run returns when ctx ends, with ctx.Err(), after resigning; when fn
// returns an error of its own (not after a loss), with that error; or
// at once for bad arguments, wrapping ErrInvalid.
func Run(ctx context.Context, cli *clientv3.Client, name, value string, fn func(ctx context.Context) error, opts ...Option) error {
	o := runOptions{root: keys.DefaultRoot, logger: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case cli == nil:
		return fmt.Errorf("%w: nil etcd client", ErrInvalid)
	case fn == nil:
		return fmt.Errorf("%w: nil fn", ErrInvalid)
	}
	root, err := keys.NormalizeRoot(o.root)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sp, err := keys.New(root, kind, name)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if o.onLeader != nil {
		var wg sync.WaitGroup
		octx, cancel := context.WithCancel(ctx)
		defer wg.Wait()
		defer cancel()
		ch := make(chan Leader)
		go observe(octx, watch.For(cli), sp, ch, o.logger)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range ch {
				o.onLeader(l)
			}
		}()
	}
	delay := runRetryMin
	for {
		led, err := runOnce(ctx, cli, name, value, fn, &o)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var fatal fatalError
			if errors.As(err, &fatal) {
				return fatal.err
			}
			if etcderr.Refused(err) {
				// A role without the permission, a failed login: no retry
				// cures it, and retrying silently would hide it.
				o.logger.Error("coord election run: etcd refused the campaign", "kind", kind, "name", name, "error", err)
				return err
			}
			o.logger.Debug("coord election run: retrying", "election", name, "error", err, "in", delay)
		}
		if led {
			delay = runRetryMin
		}
		// Jitter keeps replicas that lost together from campaigning in
		// lockstep; a campaign queues anyway, so this only spreads load.
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if !led {
			delay = min(delay*2, runRetryMax)
		}
	}
}

// fatalError ends Run.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }

// runOnce is one session's life: campaign, lead, resign. It reports
// whether it led.
func runOnce(ctx context.Context, cli *clientv3.Client, name, value string, fn func(context.Context) error, o *runOptions) (bool, error) {
	s, err := session.New(ctx, cli, o.session...)
	if err != nil {
		if errors.Is(err, session.ErrInvalid) {
			return false, fatalError{fmt.Errorf("election %q: %w: %w", name, ErrInvalid, err)}
		}
		return false, err
	}
	defer func() {
		// Close revokes the lease, so whatever Resign missed goes now. A
		// lost session is already revoking in the background, and its
		// client may be cut off: don't hold up the next campaign for it.
		if s.Err() != nil {
			go s.Close()
			return
		}
		s.Close()
	}()
	e := New(s, name)
	if err := e.Campaign(ctx, value); err != nil {
		return false, err
	}
	done := e.Done()
	lctx, cancel := context.WithCancel(context.WithValue(ctx, termKey{}, termInfo{token: e.Token(), owner: e.IsOwner()}))
	go func() {
		select {
		case <-done:
			cancel()
		case <-lctx.Done():
		}
	}()
	ferr := fn(lctx)
	cancel()
	lost := false
	select {
	case <-done:
		lost = ctx.Err() == nil
	default:
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer rcancel()
	if err := e.Resign(rctx); err != nil {
		o.logger.Debug("coord election run: resign failed; closing the session instead", "election", name, "error", err)
	}
	switch {
	case ctx.Err() != nil || lost:
		return true, nil
	case ferr != nil:
		return true, fatalError{fmt.Errorf("election %q: %w", name, ferr)}
	}
	return true, nil
}
