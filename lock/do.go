package lock

import (
	"context"
	"errors"
	"fmt"

	"github.com/coord-go/coord/session"
)

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
// This is the building block for "run this job on one replica at a time".
func Do(ctx context.Context, s *session.Session, name string, fn func(ctx context.Context) error) error {
	m := NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		return err
	}
	a := m.c.current()
	work, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-a.done:
			if err := a.lost(); err != nil {
				cancel(err)
			}
		case <-work.Done():
		}
	}()
	a.watch()
	err := fn(work)
	cancel(nil)

	uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	uerr := m.Unlock(uctx)
	ucancel()
	loss := a.lost()
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
