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
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

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
	// unreachableWarn is how long Run fails to reach etcd before it warns,
	// and then how often it warns again while that lasts.
	unreachableWarn = 10 * time.Second
)

// ErrSteppedAside is the context.Cause of fn's ctx when Run ends a term
// because the leader was asked to step aside (a transfer request, or a
// candidate of higher priority under a preempting rule): Run hands the
// leadership over once fn has returned.
var ErrSteppedAside = errors.New("election: stepping aside")

// Run is the loop a service embeds to do work only while it leads.
// It creates a session, campaigns for name with value, and calls fn with
// a ctx that is cancelled the moment the leadership is lost, or when the
// leader is asked to step aside (ErrSteppedAside as its cause); TokenFrom
// gives fn its fencing token. When fn returns, Run hands the leadership
// over (to a requested target, or to the candidate the election's rule
// picks next) and closes the session, so a successor leads within one
// round trip rather than a TTL, and only after fn has returned: two
// replicas' fn never run at once by a handover. After a loss, a handover,
// or when fn returns nil, it campaigns again with a fresh session after a
// short backoff. fn is never called again before its previous call has
// returned.
//
// Run returns when ctx ends, with ctx.Err(), after resigning; when fn
// returns an error of its own (not after a loss), with that error; at once
// when etcd refuses the campaign (a permission, a login), with that error,
// logged at error level; or at once for bad arguments, wrapping
// ErrInvalid. While it cannot reach etcd it logs a warning every 10 s.
func Run(ctx context.Context, cli *clientv3.Client, name, value string, fn func(ctx context.Context) error, opts ...Option) error {
	o := options{root: keys.DefaultRoot, logger: slog.New(slog.DiscardHandler)}
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
	var co campaignOptions
	for _, c := range o.campaign {
		c(&co)
	}
	if err := validCampaign(co); err != nil {
		return fmt.Errorf("election %q: %w", name, err)
	}
	if o.onLeader != nil {
		var wg sync.WaitGroup
		octx, cancel := context.WithCancel(ctx)
		defer wg.Wait()
		defer cancel()
		ch := make(chan Leader)
		started := make(chan struct{})
		go observe(octx, watch.For(cli), sp, ch, o.logger, started)
		wg.Go(func() {
			for l := range ch {
				o.onLeader(l)
			}
		})
		// Campaign only once the observer holds the leader of now, so the
		// first call is the leader Run found, never a later one.
		select {
		case <-started:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	delay := runRetryMin
	var failingSince, warned time.Time
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
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > unreachableWarn && time.Since(warned) > unreachableWarn {
				warned = time.Now()
				o.logger.Warn("coord election run: cannot campaign", "kind", kind, "name", name, "error", err,
					"for", time.Since(failingSince).Round(time.Second))
			}
			o.logger.Debug("coord election run: retrying", "kind", kind, "name", name, "error", err, "in", delay)
		} else {
			failingSince = time.Time{}
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

// runOnce is one session's life: campaign, lead, hand over. It reports
// whether it led.
func runOnce(ctx context.Context, cli *clientv3.Client, name, value string, fn func(context.Context) error, o *options) (bool, error) {
	s, err := session.New(ctx, cli, o.session...)
	if err != nil {
		if errors.Is(err, session.ErrInvalid) {
			return false, fatalError{fmt.Errorf("election %q: %w: %w", name, ErrInvalid, err)}
		}
		return false, err
	}
	defer func() {
		// Close revokes the lease, so whatever the handover missed goes
		// now. A lost session is already revoking in the background, and
		// its client may be cut off: don't hold up the next campaign.
		if s.Err() != nil {
			go s.Close()
			return
		}
		s.Close()
	}()
	var eopts []Option
	if o.rule != nil {
		eopts = append(eopts, WithRule(*o.rule))
	}
	e := New(s, name, eopts...)
	if err := e.Campaign(ctx, value, o.campaign...); err != nil {
		return false, err
	}
	token := e.Token()
	o.health.set(lease.Of(s))
	if o.onStarted != nil {
		o.onStarted(Leader{Value: value, Token: token})
	}
	done, asked := e.Done(), e.Asked()
	lctx, cancel := context.WithCancelCause(context.WithValue(ctx, termKey{}, termInfo{token: token, owner: e.IsOwner()}))
	stepping := false
	var smu sync.Mutex
	go func() {
		select {
		case <-done:
			cancel(e.notLeader())
		case <-asked:
			smu.Lock()
			stepping = true
			smu.Unlock()
			cancel(ErrSteppedAside)
		case <-lctx.Done():
		}
	}()
	ferr := fn(lctx)
	cancel(nil)
	o.health.set(nil)
	if o.onStopped != nil {
		o.onStopped()
	}
	lost := false
	select {
	case <-done:
		lost = ctx.Err() == nil
	default:
	}
	smu.Lock()
	aside := stepping
	smu.Unlock()
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer rcancel()
	if aside && !lost {
		err = e.stepAside(rctx)
	} else {
		err = e.Resign(rctx)
	}
	if err != nil {
		o.logger.Debug("coord election run: handover failed; closing the session instead", "kind", kind, "name", name, "error", err)
	}
	switch {
	case ctx.Err() != nil || lost || aside:
		return true, nil
	case ferr != nil:
		return true, fatalError{fmt.Errorf("election %q: %w", name, ferr)}
	}
	return true, nil
}

// stepAside hands the leadership to the requested target, when a transfer
// request names one that can still lead, else to the rule's pick.
func (e *Election) stepAside(ctx context.Context) error {
	t := e.leading()
	if t == nil {
		return e.Resign(ctx)
	}
	m := e.hub.Mirror(e.sp.Base())
	to := ""
	m.Read(ctx, 0, func(v *watch.View) {
		if req := v.Get(e.transferKey()); req != nil {
			if c := v.Get(string(req.Value)); c != nil && !candidateOf(c, e.sp).Observer {
				to = candidateOf(c, e.sp).ID
			}
		}
	})
	m.Release()
	if to != "" {
		if err := e.Transfer(ctx, to); err == nil || !errors.Is(err, ErrNoCandidate) {
			return err
		}
	}
	return e.Resign(ctx)
}
