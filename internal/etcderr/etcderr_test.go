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
