package barrier

import (
	"context"
	"errors"
	"fmt"
	"github.com/coord-go/coord/internal/etcderr"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Barrier is a gate: shut while anyone holds it, open after Release.
// Processes call Wait to block until it is open.
//
// Keys: holds live under <root>barrier/<name>/h/, one key per hold kind
// ("persistent", or a session's lease in hex). <root>barrier/<name>/released
// is rewritten by every Release, so a Release is never missed by a waiter
// that started before it; that one key outlives the barrier's use.
type Barrier struct {
	cli      *clientv3.Client
	sp       keys.Space
	holds    string // prefix of the hold keys
	released string
	err      error // from New, returned by every method
}

// New returns the barrier called name. It does not talk to etcd. A bad
// name or a nil client is reported, wrapped in ErrInvalid, by every method.
func New(cli *clientv3.Client, name string, opts ...Option) *Barrier {
	sp, err := space(cli, keys.KindBarrier, name, opts)
	if err != nil {
		return &Barrier{err: err}
	}
	return &Barrier{cli: cli, sp: sp, holds: sp.Part("h"), released: sp.Single("released")}
}

// Hold shuts the gate until Release is called, by anyone. The hold has no
// lease: it survives the holder's crash, so use it for gates that a person
// or a controller opens. Holding a held gate is a no-op, so a retry is
// safe.
func (b *Barrier) Hold(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	if _, err := b.cli.Put(ctx, b.sp.Key("h", "persistent"), keys.Record{Since: time.Now()}.Encode()); err != nil {
		return fmt.Errorf("barrier %q: hold: %w", b.sp.Name(), etcderr.Explain(b.cli, err))
	}
	return nil
}

// HoldWith shuts the gate until Release is called or s ends, whichever is
// first: the hold lives on s's lease. A session of another root prefix
// than the barrier's is refused (ErrInvalid). If several sessions hold the gate,
// it opens when the last of them ends (or on Release); a Hold without a
// session keeps it shut regardless. Holding again with the same session is
// a no-op. A nil session is ErrInvalid; an ended one returns its error
// (session.ErrClosed or session.ErrExpired).
func (b *Barrier) HoldWith(ctx context.Context, s *session.Session) error {
	if b.err != nil {
		return b.err
	}
	if err := alive(s); err != nil {
		return fmt.Errorf("barrier %q: hold: %w", b.sp.Name(), err)
	}
	if root := s.Prefix(); !strings.HasPrefix(b.sp.Base(), root+keys.KindBarrier+"/") {
		return fmt.Errorf("barrier %q: hold: %w: the barrier is under another root than the session (%q): set the same root on both", b.sp.Name(), ErrInvalid, root)
	}
	key := b.sp.Key("h", fmt.Sprintf("%016x", int64(s.Lease())))
	if _, err := b.cli.Put(ctx, key, keys.Record{Since: time.Now()}.Encode(), clientv3.WithLease(s.Lease())); err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			err = fmt.Errorf("%w: %w", session.ErrExpired, err)
		}
		return fmt.Errorf("barrier %q: hold: %w", b.sp.Name(), etcderr.Explain(b.cli, err))
	}
	s.Logger().Debug("coord barrier held", "kind", keys.KindBarrier, "name", b.sp.Name(), "lease", fmt.Sprintf("%016x", int64(s.Lease())))
	return nil
}

// Release opens the gate: it deletes every hold, with or without a
// session, and records the release in the same Txn, so every Wait that
// was blocked when it ran returns nil. Releasing an open gate is a no-op
// for the gate.
//
// When etcd is out of space (NOSPACE), the release cannot be recorded (a
// Put needs space), so Release only deletes the holds, which etcd still
// allows: the waiters find none left and return, and as no new hold can
// be taken until space is reclaimed, none can shut the gate before they
// see it open.
func (b *Barrier) Release(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	deleteHolds := clientv3.OpDelete(b.holds, clientv3.WithRange(keys.RangeEnd(b.holds)))
	_, err := b.cli.Txn(ctx).Then(deleteHolds, clientv3.OpPut(b.released, "")).Commit()
	if etcderr.NoSpace(err) {
		_, err = b.cli.Txn(ctx).Then(deleteHolds).Commit()
	}
	if err != nil {
		return fmt.Errorf("barrier %q: release: %w", b.sp.Name(), etcderr.Explain(b.cli, err))
	}
	return nil
}

// Held reports whether the gate is shut now.
func (b *Barrier) Held(ctx context.Context) (bool, error) {
	if b.err != nil {
		return false, b.err
	}
	st, err := b.read(ctx)
	if err != nil {
		return false, fmt.Errorf("barrier %q: %w", b.sp.Name(), err)
	}
	return st.holds > 0, nil
}

// Wait blocks until the gate is open: no hold is left, or a Release ran
// after Wait started. It returns nil at once if the gate is open, and ctx's
// error if ctx ends first. A broken watch, a compaction or a member
// failover never makes it return nil: it re-reads and waits on.
//
// A gate opened only by its session holds ending and shut again (by a new
// hold) before Wait could read it may go unnoticed; Release never does.
func (b *Barrier) Wait(ctx context.Context) error {
	if b.err != nil {
		return b.err
	}
	st, err := b.read(ctx)
	if err != nil {
		return fmt.Errorf("barrier %q: wait: %w", b.sp.Name(), err)
	}
	if st.holds == 0 {
		return nil
	}
	first := st.release
	// The process's one feed of the barrier's subtree sees both a hold
	// going away and the released key being rewritten. A Release is seen
	// in its event, so the waiters it wakes read nothing; a hold going
	// away needs a count of those left.
	released := false
	sawRelease := func(ev *clientv3.Event) bool {
		if ev.Type == clientv3.EventTypePut && string(ev.Kv.Key) == b.released && ev.Kv.ModRevision != first {
			released = true
		}
		return true
	}
	err = watch.For(b.cli).Until(ctx, b.sp.Base(), keys.RangeEnd(b.sp.Base()), st.rev, sawRelease, func(ctx context.Context) (bool, int64, error) {
		if released {
			return true, 0, nil
		}
		st, err := b.read(ctx)
		if err != nil {
			return false, 0, err
		}
		return st.holds == 0 || st.release != first, st.rev, nil
	})
	if err != nil {
		return fmt.Errorf("barrier %q: wait: %w", b.sp.Name(), err)
	}
	return nil
}

type gate struct {
	holds   int64 // hold keys now
	release int64 // mod revision of the last Release, 0 if none
	rev     int64 // revision of the read
}

// read returns the gate's state in one Txn.
func (b *Barrier) read(ctx context.Context) (gate, error) {
	resp, err := b.cli.Txn(ctx).Then(
		clientv3.OpGet(b.holds, clientv3.WithRange(keys.RangeEnd(b.holds)), clientv3.WithCountOnly()),
		clientv3.OpGet(b.released, clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return gate{}, err
	}
	g := gate{holds: resp.Responses[0].GetResponseRange().Count, rev: resp.Header.Revision}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		g.release = kvs[0].ModRevision
	}
	return g, nil
}
