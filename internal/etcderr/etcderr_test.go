package etcderr_test

import (
	"errors"
	"testing"

	"github.com/coord-go/coord/internal/etcderr"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRefused(t *testing.T) {
	for _, err := range []error{
		rpctypes.ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied,
		status.Error(codes.PermissionDenied, "etcdserver: permission denied"),
		rpctypes.ErrAuthFailed, rpctypes.ErrInvalidAuthToken, rpctypes.ErrUserEmpty,
		// What a refused watch returns: a plain error with the message.
		errors.New("rpc error: code = PermissionDenied desc = etcdserver: permission denied"),
	} {
		if !etcderr.Refused(err) {
			t.Errorf("Refused(%v) = false", err)
		}
		if etcderr.Transient(err) {
			t.Errorf("Transient(%v) = true", err)
		}
	}
	if !etcderr.Transient(rpctypes.ErrNoLeader) || etcderr.Transient(rpctypes.ErrNoSpace) || !etcderr.NoSpace(rpctypes.ErrGRPCNoSpace) {
		t.Error("no leader must be transient, NOSPACE must not")
	}
}

func TestWrapNoSpace(t *testing.T) {
	for _, err := range []error{rpctypes.ErrNoSpace, rpctypes.ErrGRPCNoSpace, errors.New("rpc error: code = ResourceExhausted desc = etcdserver: mvcc: database space exceeded")} {
		w := etcderr.WrapNoSpace(err)
		if !errors.Is(w, etcderr.ErrNoSpace) || !errors.Is(w, err) || !etcderr.NoSpace(w) {
			t.Errorf("WrapNoSpace(%v) = %v: want it to wrap ErrNoSpace and the error", err, w)
		}
		if etcderr.WrapNoSpace(w) != w {
			t.Errorf("WrapNoSpace wrapped %v twice", w)
		}
		if etcderr.Transient(w) {
			t.Errorf("Transient(%v) = true", w)
		}
	}
	for _, err := range []error{nil, rpctypes.ErrNoLeader, errors.New("other")} {
		if got := etcderr.WrapNoSpace(err); got != err {
			t.Errorf("WrapNoSpace(%v) = %v, want it unchanged", err, got)
		}
	}
}
