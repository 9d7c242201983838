package etcderr

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrClientClosed is returned by waits and holds whose etcd client was
// closed: nothing can be learned from etcd through it any more.
var ErrClientClosed = errors.New("etcd client closed")

// ErrNoSpace is wrapped, by Explain, into every error that is etcd's
// "database space exceeded": the server's NOSPACE alarm is raised. It is
// exported as session.ErrNoSpace.
var ErrNoSpace = errors.New("etcd is out of space (NOSPACE alarm): writes that need space fail until an operator compacts, defragments and disarms the alarm")

// Transient reports whether err is a failure that a retry may cure: no
// leader, a leader change, a server-side timeout, an unreachable member.
func Transient(err error) bool {
	// NOSPACE shares ResourceExhausted with "too many requests", but no
	// retry cures it: only an operator can.
	if err == nil || Refused(err) || NoSpace(err) || errors.Is(err, ErrClientClosed) {
		return false
	}
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost), errors.Is(err, rpctypes.ErrTooManyRequests),
		errors.Is(err, rpctypes.ErrGRPCNoLeader), errors.Is(err, rpctypes.ErrGRPCLeaderChanged),
		errors.Is(err, rpctypes.ErrGRPCTimeout), errors.Is(err, rpctypes.ErrGRPCTimeoutDueToLeaderFail),
		errors.Is(err, rpctypes.ErrGRPCTimeoutDueToConnectionLost):
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// Refused reports whether etcd refused the request for who sent it: a
// permission the user's roles do not grant, or an authentication that
// failed or expired. Such a request fails the same way every time.
func Refused(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrGRPCPermissionDenied),
		errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrGRPCUserEmpty),
		errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrGRPCAuthFailed),
		errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken),
		errors.Is(err, rpctypes.ErrAuthOldRevision), errors.Is(err, rpctypes.ErrGRPCAuthOldRevision):
		return true
	}
	switch status.Code(err) {
	case codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	// A refused watch reaches the caller as a plain error carrying the
	// server's message, with no code left to test.
	msg := err.Error()
	for _, e := range []error{rpctypes.ErrGRPCPermissionDenied, rpctypes.ErrGRPCAuthFailed,
		rpctypes.ErrGRPCInvalidAuthToken, rpctypes.ErrGRPCUserEmpty, rpctypes.ErrGRPCAuthOldRevision} {
		if strings.Contains(msg, rpctypes.ErrorDesc(e)) {
			return true
		}
	}
	return false
}

// NoSpace reports whether err is etcd's "database space exceeded": the
// NOSPACE alarm is raised and every write fails until an operator
// compacts, defragments and disarms it.
func NoSpace(err error) bool {
	return errors.Is(err, ErrNoSpace) || errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) ||
		err != nil && strings.Contains(err.Error(), rpctypes.ErrorDesc(rpctypes.ErrGRPCNoSpace))
}

// Closed reports whether cli has been closed.
func Closed(cli *clientv3.Client) bool { return cli.Ctx().Err() != nil }

// Explain turns a context error caused by the client's own closing into
// ErrClientClosed, so a closed client is never mistaken for a caller's
// cancellation, wraps ErrNoSpace into etcd's "database space exceeded",
// and returns any other error as it is.
func Explain(cli *clientv3.Client, err error) error {
	if err != nil && Closed(cli) && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled) {
		return errors.Join(ErrClientClosed, err)
	}
	return WrapNoSpace(err)
}

// WrapNoSpace returns err wrapping ErrNoSpace if it is etcd's "database
// space exceeded" (and does not wrap it yet), and err as it is otherwise.
func WrapNoSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) || !NoSpace(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNoSpace, err)
}

// LeaseNotFound reports whether err says a lease named in the request is
// gone (revoked or expired).
func LeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) ||
		err != nil && strings.Contains(err.Error(), rpctypes.ErrorDesc(rpctypes.ErrGRPCLeaseNotFound))
}
