package barrier

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrInvalid is wrapped by the errors returned for bad arguments: a nil
// client or session, an empty, oversized or invalid UTF-8 name, root
// prefix or id, or a negative count. Nothing is written to etcd.
var ErrInvalid = errors.New("barrier: invalid argument")

// ErrFull is returned by DoubleBarrier.Enter when the round already has
// count participants, or when the previous round has not yet finished
// leaving. The caller is not a participant; it may retry later.
var ErrFull = errors.New("barrier: double barrier is full")

// ErrEntered is returned by DoubleBarrier.Enter when this participant
// has already entered and not yet left.
var ErrEntered = errors.New("barrier: already entered")

// ErrNotEntered is returned by DoubleBarrier.Leave when this participant
// has not entered.
var ErrNotEntered = errors.New("barrier: not entered")

// ErrLost is returned by DoubleBarrier.Enter and Leave when the
// participant's key was deleted by someone else while its session lived.
// (When the session itself ended, its error, session.ErrExpired or
// session.ErrClosed, is returned instead.)
var ErrLost = errors.New("barrier: participant key deleted")

// ErrCountMismatch is returned when a Latch or DoubleBarrier is used with
// a different count than the one stored in etcd for its name by the first
// user.
var ErrCountMismatch = errors.New("barrier: count does not match the stored count")

// Option configures New and NewLatch.
type Option func(*options)

type options struct{ root string }

// WithPrefix sets the root prefix of the keys (default "coord/"; a '/' is
// appended when missing). Every process using a name must use the same
// root. A DoubleBarrier takes its root from its session instead.
func WithPrefix(root string) Option { return func(o *options) { o.root = root } }

// space validates the client and name and builds the key subtree.
func space(cli *clientv3.Client, kind, name string, opts []Option) (keys.Space, error) {
	o := options{root: keys.DefaultRoot}
	for _, opt := range opts {
		opt(&o)
	}
	if cli == nil {
		return keys.Space{}, fmt.Errorf("%w: nil etcd client", ErrInvalid)
	}
	root, err := keys.NormalizeRoot(o.root)
	if err != nil {
		return keys.Space{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	sp, err := keys.New(root, kind, name)
	if err != nil {
		return keys.Space{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return sp, nil
}

// alive says why s cannot be used, or nil.
func alive(s *session.Session) error {
	if s == nil {
		return fmt.Errorf("%w: nil session", ErrInvalid)
	}
	return s.Err()
}

// anonID names an id-less CountDown. Escape never produces '%' followed
// by a lowercase letter, so no caller's id can collide with it.
func anonID() string {
	var b [12]byte
	rand.Read(b[:])
	return "%anon-" + hex.EncodeToString(b[:])
}
