package fence

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The metadata keys of a fenced gRPC call.
const (
	// TokenMetadata carries the writer's fencing token, in decimal.
	TokenMetadata = "coord-fence-token"
	// ResourceMetadata names the resource the call writes.
	ResourceMetadata = "coord-fence-resource"
)

// UnaryClientInterceptor sends resource and token() (or the pair of the
// call's context, see NewContext) with every unary call, as metadata. A
// call with no token to send (0: nothing is held) is not made: it fails
// with an error wrapping ErrInvalid.
func UnaryClientInterceptor(resource string, token func() int64) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, err := outgoing(ctx, resource, token)
		if err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor is UnaryClientInterceptor for streams: the pair
// is sent when the stream opens.
func StreamClientInterceptor(resource string, token func() int64) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, err := outgoing(ctx, resource, token)
		if err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

func outgoing(ctx context.Context, resource string, token func() int64) (context.Context, error) {
	r, t, err := tokenOf(ctx, resource, token)
	if err != nil {
		return nil, fmt.Errorf("fence: call not made: %w", err)
	}
	return metadata.AppendToOutgoingContext(ctx, ResourceMetadata, r, TokenMetadata, strconv.FormatInt(t, 10)), nil
}

// UnaryServerInterceptor lets a unary call through only if its fencing
// token is not older than the highest store has seen for its resource,
// and records it, as Middleware does for HTTP. It fails the call with
// codes.Aborted for a stale token (gRPC's code for a failed sequencer
// check), codes.InvalidArgument for a missing or bad token or resource,
// and codes.Unavailable when the store failed (fail closed). Calls of
// one resource run their handlers one at a time in this process, and a
// newer token cancels the context of a handler still running with an
// older one (see Middleware); the handler finds the checked pair with
// FromContext.
func UnaryServerInterceptor(store Store, opts ...ServerOption) grpc.UnaryServerInterceptor {
	s := newServer(store, opts)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, done, err := s.admitCall(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		defer done()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams: the
// token is checked when the stream opens, and the resource's turn is
// held until the handler returns, or handed on, cancelling the stream,
// when a newer token arrives.
func StreamServerInterceptor(store Store, opts ...ServerOption) grpc.StreamServerInterceptor {
	s := newServer(store, opts)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, done, err := s.admitCall(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		defer done()
		return handler(srv, &fencedStream{ServerStream: ss, ctx: ctx})
	}
}

type fencedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f *fencedStream) Context() context.Context { return f.ctx }

// admitCall reads a call's pair and admits it, or returns its status.
func (s *server) admitCall(ctx context.Context, method string) (context.Context, func(), error) {
	md, _ := metadata.FromIncomingContext(ctx)
	resource := first(md, ResourceMetadata)
	if s.grpcResource != nil {
		resource = s.grpcResource(ctx, method)
	}
	raw := first(md, TokenMetadata)
	if raw == "" {
		return nil, nil, status.Errorf(codes.InvalidArgument, "fence: %v: the call has no %s metadata", errNoToken, TokenMetadata)
	}
	token, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return nil, nil, status.Errorf(codes.InvalidArgument, "fence: %v: %s %q is not a number", ErrInvalid, TokenMetadata, raw)
	}
	hctx, done, err := s.admit(ctx, resource, token)
	switch {
	case err == nil:
		return hctx, done, nil
	case errors.Is(err, ErrStale):
		return nil, nil, status.Error(codes.Aborted, err.Error())
	case errors.Is(err, ErrInvalid):
		return nil, nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return nil, nil, status.Error(codes.Unavailable, err.Error()+"; write refused")
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
