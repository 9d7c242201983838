package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Campaign blocks until this candidate leads the election, then sets the
// leader's value. Candidates are served in the order they campaigned.
//
// It returns nil only after a read showed its own key alive and first in
// line while its session lived. It fails at once, wrapping
// session.ErrExpired or session.ErrClosed, when the session ends while
// waiting, or with ErrKeyDeleted when its key is deleted; on those
// failures and when ctx ends it deletes its key (with its own timeout),
// so nothing is left behind. Campaign on a leader proclaims value.
func (e *Election) Campaign(ctx context.Context, value string) error {
	if e.err != nil {
		return e.err
	}
	e.mu.Lock()
	if e.campaigning {
		e.mu.Unlock()
		return fmt.Errorf("election %q: %w", e.name, ErrCampaigning)
	}
	if t := e.cur; t != nil && t.hold.Err() == nil {
		e.mu.Unlock()
		return e.Proclaim(ctx, value)
	}
	e.campaigning = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.campaigning = false
		e.mu.Unlock()
	}()
	if err := e.s.Err(); err != nil {
		return fmt.Errorf("election %q: %w", e.name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("election %q: %w", e.name, err)
	}

	m := e.s.Metrics()
	m.Waiting(kind, e.name, 1)
	defer m.Waiting(kind, e.name, -1)
	start := time.Now()
	t, err := e.campaign(ctx, value)
	if err != nil {
		e.s.Logger().Debug("coord campaign failed", "election", e.name, "error", err)
		return fmt.Errorf("election %q: %w", e.name, err)
	}
	e.mu.Lock()
	e.cur = t
	e.mu.Unlock()
	m.Acquired(kind, e.name, time.Since(start))
	m.Leader(e.name, true)
	e.s.Logger().Info("coord leadership gained", "election", e.name, "token", t.rev)
	go e.watchLoss(t)
	return nil
}

// campaign queues the candidate's key and waits until it is first.
func (e *Election) campaign(ctx context.Context, value string) (*term, error) {
	key := e.prefix + e.s.NextID()
	// One Txn puts the key and reads the two newest keys of the line:
	// ours, and the one just before it, which is the only key we watch.
	// With no key before ours we lead at once, for one Txn.
	line := clientv3.OpGet(e.prefix, clientv3.WithRange(keys.RangeEnd(e.prefix)),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
		clientv3.WithLimit(2), clientv3.WithKeysOnly())
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(e.s.PutOwn(key, value), line).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return nil, e.sessionErr()
		}
		// The Txn may have been applied before the error reached us.
		e.cleanup(ctx, key, 0)
		return nil, err
	}
	if !resp.Succeeded {
		// Our ids are unique, so the key can only exist if this very Txn
		// was applied twice; never treat it as ours.
		e.cleanup(ctx, key, 0)
		return nil, fmt.Errorf("candidate key %s already existed", key)
	}
	rev := resp.Header.Revision
	kvs := resp.Responses[1].GetResponseRange().Kvs
	pred := ""
	if len(kvs) == 2 {
		pred = string(kvs[1].Key)
	}
	// The hold starts watching right after rev, so it misses nothing:
	// while we wait it turns our key's deletion into an error at once, and
	// afterwards it is the leadership's Done.
	hold := wait.NewHold(e.cli, key, rev, e.s)
	if pred != "" {
		q := wait.Queue{Prefix: e.prefix, Own: key, Rev: rev}
		err = wait.NoneBefore(ctx, e.cli, q, pred, rev, e.s, hold)
	}
	if err == nil {
		// Whatever ended first decides; a win observed by a read that
		// raced with the session's end is no win.
		if herr := hold.Err(); herr != nil {
			err = herr
		} else if serr := e.s.Err(); serr != nil {
			err = serr
		}
	}
	if err != nil {
		hold.Stop()
		e.cleanup(ctx, key, rev)
		if errors.Is(err, wait.ErrKeyGone) {
			if serr := e.s.Err(); serr != nil {
				return nil, serr
			}
			return nil, fmt.Errorf("%w: %s", ErrKeyDeleted, key)
		}
		return nil, err
	}
	return &term{key: key, rev: rev, hold: hold, start: time.Now()}, nil
}

// cleanup deletes a failed candidate's key. The key is unique to this
// Campaign (Session.NextID), so Session.Retire's unconditional delete can
// never touch someone else's; it runs with its own timeout after ctx is
// cancelled, and if etcd is unreachable it keeps trying in the background
// until it can or the session ends, so a failed candidate never stands in
// the line for longer than etcd itself is down. A lost session needs
// nothing: its lease takes the key along.
func (e *Election) cleanup(ctx context.Context, key string, _ int64) {
	if err := e.s.Retire(ctx, key); err != nil {
		e.s.Logger().Debug("coord campaign cleanup deferred", "election", e.name, "key", key, "error", err)
	}
}

func (e *Election) sessionErr() error {
	if err := e.s.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: lease %x not found", session.ErrExpired, int64(e.s.Lease()))
}

// watchLoss reports a leadership that ends other than by Resign.
func (e *Election) watchLoss(t *term) {
	<-t.hold.Done()
	e.mu.Lock()
	resigned := t.resigned
	if !resigned && e.cur == t {
		// Keep the term (Token stays for fencing) but mark it over.
		t.resigned = true
	}
	e.mu.Unlock()
	if resigned {
		return
	}
	m := e.s.Metrics()
	m.Leader(e.name, false)
	m.Released(kind, e.name, time.Since(t.start), true)
	e.s.Logger().Warn("coord leadership lost", "election", e.name, "token", t.rev, "error", t.hold.Err())
}
