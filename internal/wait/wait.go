package wait

import (
	"context"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrKeyGone is returned when the caller's own key was deleted (by anyone,
// or with its lease) while it waited or held.
var ErrKeyGone = errors.New("own key deleted")

// Stopper is anything whose end ends a wait: a session.Session, a Hold.
type Stopper interface {
	Done() <-chan struct{}
	Err() error
}

// Range is what a wait watches: one key, or [Key, End) when End is set.
type Range struct {
	Key, End string
	// DeletesOnly asks the server not to send puts, for waits that only
	// care about keys going away.
	DeletesOnly bool
}

// Check reads the state a wait is waiting for. done ends the wait; rev is
// the revision the read saw, so events at or below it are not read again.
// An error ends the wait, unless Transient says it is worth a retry.
type Check func(ctx context.Context) (done bool, rev int64, err error)

// Until blocks until check reports done, ctx ends, or a stopper ends.
//
// since is the revision at which the caller last read the state and found
// the wait not over. Until watches ranges from now; if the watches start
// after since, it calls check once first, since something may have
// changed in between; after that, it calls check only when an event newer
// than the last read arrives. A watch that breaks is reopened and followed
// by a fresh check. Transient read failures are retried with backoff.
func Until(ctx context.Context, cli *clientv3.Client, since int64, ranges []Range, check Check, stops ...Stopper) error {
	ctx, cancel := withStops(ctx, stops)
	defer cancel()
	backoff := newBackoff()
	for {
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		events, created, err := open(wctx, cli, ranges)
		if err != nil {
			wcancel()
			if err := stopped(ctx, stops); err != nil {
				return err
			}
			backoff.sleep(ctx)
			continue
		}
		need := created > since
		broken := false
		for !broken {
			if need {
				done, rev, err := check(ctx)
				switch {
				case err != nil && Transient(err) && ctx.Err() == nil:
					backoff.sleep(ctx)
					continue
				case err != nil:
					wcancel()
					if serr := stopped(ctx, stops); serr != nil {
						return serr
					}
					return err
				case done:
					wcancel()
					return nil
				}
				backoff.reset()
				since = max(since, rev)
				need = false
			}
			select {
			case <-ctx.Done():
				wcancel()
				return stopped(ctx, stops)
			case resp, ok := <-events:
				if !ok || resp.Canceled || resp.Err() != nil {
					broken = true
					continue
				}
				for _, ev := range resp.Events {
					if ev.Kv.ModRevision > since {
						need = true
					}
				}
			}
		}
		wcancel()
		// Reopened watches start at a newer revision than since, so the
		// next round re-reads before it trusts anything.
	}
}

// open starts one watch per range and waits for the server to confirm
// each. It returns the merged events and the newest creation revision.
func open(ctx context.Context, cli *clientv3.Client, ranges []Range) (<-chan clientv3.WatchResponse, int64, error) {
	events := make(chan clientv3.WatchResponse, 4)
	var created int64
	for _, r := range ranges {
		opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
		if r.End != "" {
			opts = append(opts, clientv3.WithRange(r.End))
		}
		if r.DeletesOnly {
			opts = append(opts, clientv3.WithFilterPut())
		}
		wch := cli.Watch(ctx, r.Key, opts...)
		select {
		case resp, ok := <-wch:
			if !ok {
				return nil, 0, errors.New("watch closed before it started")
			}
			if err := resp.Err(); err != nil || !resp.Created {
				return nil, 0, errors.Join(errors.New("watch did not start"), err)
			}
			created = max(created, resp.Header.Revision)
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		go func() {
			for resp := range wch {
				select {
				case events <- resp:
				case <-ctx.Done():
					return
				}
			}
			// Tell the waiter this watch is gone.
			select {
			case events <- clientv3.WatchResponse{Canceled: true}:
			case <-ctx.Done():
			}
		}()
	}
	return events, created, nil
}

// withStops returns a context that is also cancelled when any stopper
// ends, so that reads in flight return at once on session loss.
func withStops(ctx context.Context, stops []Stopper) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	for _, s := range stops {
		if s == nil {
			continue
		}
		go func() {
			select {
			case <-s.Done():
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}

// stopped explains why ctx ended: a stopper's error first, since a lost
// session is the cause users need to see, else the context's own error.
func stopped(ctx context.Context, stops []Stopper) error {
	for _, s := range stops {
		if s == nil {
			continue
		}
		select {
		case <-s.Done():
			if err := s.Err(); err != nil {
				return err
			}
		default:
		}
	}
	return ctx.Err()
}

// Transient reports whether err is a failure that a retry may cure: no
// leader, a leader change, a server-side timeout, an unreachable member.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost), errors.Is(err, rpctypes.ErrTooManyRequests):
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 10 * time.Millisecond} }
func (b *backoff) reset()  { b.d = 10 * time.Millisecond }
func (b *backoff) sleep(ctx context.Context) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	b.d = min(b.d*2, 500*time.Millisecond)
}
