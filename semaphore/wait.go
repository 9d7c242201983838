package semaphore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/wait"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// wait blocks until the request l fits, keeping l current from the
// events of the semaphore's subtree (its line and its capacity key).
//
// Why not wait.Until: a release must wake only the waiters it lets
// proceed, and which those are depends on the weights of all the keys
// that left, not on any single key. Until re-reads on every event, which
// would make each release cost a read per waiter. Here each event is
// applied to the waiter's own copy of the line, so a waiter that still
// does not fit costs no RPC at all, and one that does is granted on the
// event itself: the watch carries every change in revision order, so the
// copy is exactly what a read at that revision would return.
//
// The events come from the Semaphore's follower, one watch shared by its
// waiters and kept a while after the last, with the recent history: a
// waiter whose Txn is in that history needs no watch and no read of its
// own. Otherwise it re-reads once; and it re-reads whenever the watch
// breaks (compaction, no leader, a lost stream), which the follower
// reopens from "now" with a created notification, as wait.Until does.
func (s *Semaphore) wait(ctx context.Context, l *line) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	pause := 10 * time.Millisecond
	for {
		if ctx.Err() != nil {
			return s.stopped(ctx)
		}
		in, complete, err := s.f.join(ctx, l.since)
		if err != nil {
			continue // ctx ended
		}
		if !complete {
			s.s.Logger().Debug("coord semaphore: re-reading the line", "name", s.name, "since", l.since)
		}
		err = s.follow(ctx, l, in, complete)
		s.f.leave(in)
		switch {
		case err != nil && wait.Transient(err) && ctx.Err() == nil:
		case err != nil:
			if ctx.Err() != nil {
				return s.stopped(ctx)
			}
			return err
		case l.fits():
			return nil
		default:
			pause = 10 * time.Millisecond
			continue
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// follow brings l up to date (re-reading unless the inbox is complete)
// and applies the inbox's events until l fits, the watch breaks (nil
// error, l not fitting: join again), or an event or ctx ends the wait.
func (s *Semaphore) follow(ctx context.Context, l *line, in *sub, complete bool) error {
	if !complete {
		if err := s.reread(ctx, l); err != nil || l.fits() {
			return err
		}
	}
	for {
		evs, broken := in.take()
		for _, ev := range evs {
			// Granted at the first revision at which the request fits,
			// before any later event is applied: that is the revision
			// SetCapacity and State judge holders at.
			if ev.Kv.ModRevision > l.since && l.fits() {
				return nil
			}
			if err := s.apply(l, ev); err != nil {
				return err
			}
		}
		if l.fits() || broken {
			return nil
		}
		select {
		case <-ctx.Done():
			return s.stopped(ctx)
		case <-in.signal:
		}
	}
}

// apply updates l with one event of the semaphore's subtree.
func (s *Semaphore) apply(l *line, ev *clientv3.Event) error {
	if ev.Kv.ModRevision <= l.since {
		return nil // already in the read l came from
	}
	l.since = ev.Kv.ModRevision
	key := string(ev.Kv.Key)
	switch {
	case key == s.capKey():
		if ev.Type == clientv3.EventTypeDelete {
			return nil // someone removed it by hand; keep the last known
		}
		return s.newCapacity(l, ev.Kv.Value)
	case !strings.HasPrefix(key, s.linePfx()):
		return nil
	case key == l.own:
		if ev.Type == clientv3.EventTypeDelete {
			return s.lost(l.own)
		}
	case ev.Type == clientv3.EventTypeDelete:
		if w, ok := l.earlier[key]; ok {
			l.sum -= w
			delete(l.earlier, key)
		}
	default:
		// A put: a new key is later in line and does not matter; an
		// earlier key rewritten by hand changes its weight.
		if w, ok := l.earlier[key]; ok {
			nw := weight(ev.Kv.Value)
			l.sum += nw - w
			l.earlier[key] = nw
		}
	}
	return nil
}

func (s *Semaphore) newCapacity(l *line, v []byte) error {
	c, err := s.adopt(v)
	if err != nil {
		return err
	}
	l.capacity = c
	if !l.fits() && l.n > c.n {
		return fmt.Errorf("%w: capacity lowered to %d under a waiting request for %d", ErrTooLarge, c.n, l.n)
	}
	return nil
}

// reread brings l up to date in one read, checking the own key is still
// there as created.
func (s *Semaphore) reread(ctx context.Context, l *line) error {
	pfx := s.linePfx()
	resp, err := s.s.Client().Txn(ctx).Then(clientv3.OpGet(l.own), clientv3.OpGet(s.capKey()),
		clientv3.OpGet(pfx, clientv3.WithRange(keys.RangeEnd(pfx)), clientv3.WithMaxCreateRev(l.rev-1))).Commit()
	if err != nil {
		return err
	}
	own := resp.Responses[0].GetResponseRange().Kvs
	if len(own) == 0 || own[0].CreateRevision != l.rev {
		return s.lost(l.own)
	}
	if capKvs := resp.Responses[1].GetResponseRange().Kvs; len(capKvs) > 0 {
		if err := s.newCapacity(l, capKvs[0].Value); err != nil {
			return err
		}
	}
	l.load(resp.Responses[2].GetResponseRange().Kvs)
	l.since = resp.Header.Revision
	return nil
}

// lost explains a request or permit key found gone: with its session, or
// deleted by someone.
func (s *Semaphore) lost(key string) error {
	if err := s.s.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrLost, err)
	}
	// The key may have gone with the lease a moment before the session
	// noticed; ask, so the caller sees the cause that matters.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if ttl, err := s.s.Client().TimeToLive(ctx, s.s.Lease()); err == nil && ttl.TTL <= 0 {
		return fmt.Errorf("%w: %w: lease %x is gone", ErrLost, session.ErrExpired, int64(s.s.Lease()))
	}
	return fmt.Errorf("%w: key %s was deleted", ErrLost, key)
}

// stopped explains why a wait's ctx ended: the session's end first, since
// that is the cause a user needs to see, else the caller's ctx.
func (s *Semaphore) stopped(ctx context.Context) error {
	if err := s.s.Err(); err != nil {
		return err
	}
	return context.Cause(ctx)
}

// watchStarted waits for the watch's created notification and returns
// the revision it starts after.
func watchStarted(ctx context.Context, wch clientv3.WatchChan) (int64, error) {
	select {
	case resp, ok := <-wch:
		if !ok {
			return 0, errors.New("watch closed before it started")
		}
		if err := resp.Err(); err != nil || !resp.Created {
			return 0, errors.Join(errors.New("watch did not start"), err)
		}
		return resp.Header.Revision, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
