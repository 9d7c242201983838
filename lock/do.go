package lock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// unlockTimeout bounds Do's Unlock, which runs even after ctx ended.
const unlockTimeout = 5 * time.Second

type holdKey struct{}

type held struct {
	token int64
	owner clientv3.Cmp
}

// TokenFrom returns the fencing token of the lock whose Do gave fn this
// ctx, so fn can fence the writes it makes outside etcd.
func TokenFrom(ctx context.Context) (int64, bool) {
	h, ok := ctx.Value(holdKey{}).(held)
	return h.token, ok
}

// OwnerFrom returns the IsOwner guard of the lock whose Do gave fn this
// ctx, so fn can make its own etcd Txns conditional on still holding it.
func OwnerFrom(ctx context.Context) (clientv3.Cmp, bool) {
	h, ok := ctx.Value(holdKey{}).(held)
	return h.owner, ok
}

// invalid wraps a name validation error so it matches ErrInvalid.
func invalid(label string, err error) error {
	return fmt.Errorf("%s: %w: %w", label, ErrInvalid, err)
}

// Do takes the lock on name, runs fn while holding it, and unlocks. fn's
// context is cancelled the moment the lock is lost (session ended or key
// deleted), with the loss as its context.Cause. Do returns Lock's error,
// or fn's error, or, when the lock was lost while fn ran, an error
// wrapping ErrLost (and session.ErrExpired when that was the cause)
// joined with fn's error. Unlock runs with a timeout of its own, even
// after ctx is cancelled.
//
// fn finds the lock's fencing token with TokenFrom and its IsOwner guard
// with OwnerFrom, to fence what it writes.
//
// opts are NewMutex's (WithLockDelay). This is the building block for
// "run this job on one replica at a time".
func Do(ctx context.Context, s *session.Session, name string, fn func(ctx context.Context) error, opts ...Option) error {
	m := NewMutex(s, name, opts...)
	if err := m.Lock(ctx); err != nil {
		return err
	}
	h := m.c.current().h
	work, cancel := context.WithCancelCause(context.WithValue(ctx, holdKey{}, held{token: m.Token(), owner: m.IsOwner()}))
	done := h.Done()
	go func() {
		select {
		case <-done:
			if err := h.Lost(); err != nil {
				cancel(err)
			}
		case <-work.Done():
		}
	}()
	err := fn(work)
	cancel(nil)

	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
	uerr := m.Unlock(uctx)
	ucancel()
	loss := h.Lost()
	if loss == nil && errors.Is(uerr, ErrLost) {
		loss = uerr
	}
	switch {
	case loss != nil && err != nil && !errors.Is(err, context.Canceled):
		return errors.Join(loss, err)
	case loss != nil:
		return loss
	case err != nil:
		return err
	}
	return uerr
}
