package election

import (
	"context"
	"errors"
	"fmt"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Campaign blocks until this candidate leads the election, then sets the
// leader's value. Candidates are served in the order they campaigned.
//
// Uncontended it is one Txn; a waiting candidate waits on the process's
// shared mirror of the candidates, so a handover costs the leader's
// delete and one watch event. It returns nil only after its own key was
// seen alive and first in line while its session lived. It fails at once,
// wrapping session.ErrExpired or session.ErrClosed, when the session ends
// while waiting, or with ErrKeyDeleted when its key is deleted; on those
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
	if e.cur != nil && e.cur.Held() {
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
	h, err := e.campaign(ctx, value)
	if err != nil {
		e.s.Logger().Debug("coord campaign failed", "kind", kind, "name", e.name, "error", err)
		return err
	}
	e.mu.Lock()
	e.cur = h
	e.mu.Unlock()
	return nil
}

// campaign queues the candidate's key and waits until it is first.
func (e *Election) campaign(ctx context.Context, value string) (*hold.Hold, error) {
	c := e.sp.Part("c")
	h := hold.New(e.s, &e.cfg, keys.Record{Value: value},
		hold.Key{Key: e.sp.Key("c", e.s.NextID()), Watch: watch.MirrorOf{Hub: e.hub, Base: e.sp.Base()}})
	// The same Txn reads, in key order (so etcd honours the limit), whether
	// any other candidate is queued: with none, we lead at once.
	created, err := h.Create(ctx, hold.Spec{Then: []clientv3.Op{
		clientv3.OpGet(c, clientv3.WithRange(keys.RangeEnd(c)), clientv3.WithLimit(2), clientv3.WithKeysOnly())}})
	if err != nil {
		h.Abandon(ctx)
		return nil, err
	}
	alone := false
	if !created.Existed {
		r := created.Then[0].GetResponseRange()
		alone = len(r.Kvs) == 1 && !r.More
	}
	if !alone {
		if err := e.wait(ctx, h); err != nil {
			h.Abandon(ctx)
			return nil, err
		}
	}
	if err := h.Grant(); err != nil {
		h.Abandon(ctx)
		return nil, err
	}
	// Leadership is watched for loss from the start: Run and most callers
	// ask for Done, and the mirror it shares costs nothing more.
	h.Watch()
	return h, nil
}

func (e *Election) wait(ctx context.Context, h *hold.Hold) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	m := e.hub.Mirror(e.sp.Base())
	defer m.Release()
	err := m.Waitlist("first", watch.First).Wait(ctx, &watch.Waiter{Key: h.Key(), Rev: h.Rev(), Arg: []string{"c"}})
	if err == nil {
		return nil
	}
	if errors.Is(err, watch.ErrGone) {
		e.s.Verify(context.WithoutCancel(ctx))
	}
	if serr := e.s.Err(); serr != nil {
		return fmt.Errorf("election %q: %w", e.name, serr)
	}
	if errors.Is(err, watch.ErrGone) {
		return fmt.Errorf("election %q: %w: %s", e.name, ErrKeyDeleted, h.Key())
	}
	return fmt.Errorf("election %q: %w", e.name, err)
}
