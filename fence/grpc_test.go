package fence_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/fence"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcServer serves gRPC's health service (a unary Check, a streaming
// Watch) behind the fence interceptors on store; ran counts the calls
// that reached a handler.
func grpcServer(t *testing.T, store fence.Store) (addr string, ran *atomic.Int64) {
	t.Helper()
	ran = new(atomic.Int64)
	count := func(ctx context.Context) {
		if _, _, ok := fence.FromContext(ctx); ok {
			ran.Add(1)
		}
	}
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor(fence.UnaryServerInterceptor(store),
			func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				count(ctx)
				return h(ctx, req)
			}),
		grpc.ChainStreamInterceptor(fence.StreamServerInterceptor(store),
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				count(ss.Context())
				return h(srv, ss)
			}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String(), ran
}

func grpcClient(t *testing.T, addr, resource string, token *atomic.Int64) healthpb.HealthClient {
	t.Helper()
	tok := func() int64 { return token.Load() }
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(fence.UnaryClientInterceptor(resource, tok)),
		grpc.WithStreamInterceptor(fence.StreamClientInterceptor(resource, tok)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func TestGRPCInterceptors(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	addr, ran := grpcServer(t, &fence.Memory{})
	var token atomic.Int64
	c := grpcClient(t, addr, "jobs", &token)
	check := func(tok int64) error {
		token.Store(tok)
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	watch := func(tok int64) error {
		token.Store(tok)
		st, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	for _, tok := range []int64{4, 4, 6} {
		if err := check(tok); err != nil {
			t.Fatalf("unary, token %d: %v", tok, err)
		}
	}
	if err := check(5); status.Code(err) != codes.Aborted {
		t.Fatalf("unary, stale token: %v, want Aborted", err)
	}
	if err := watch(6); err != nil {
		t.Fatalf("stream, current token: %v", err)
	}
	if err := watch(2); status.Code(err) != codes.Aborted {
		t.Fatalf("stream, stale token: %v, want Aborted", err)
	}
	if err := check(0); !errors.Is(err, fence.ErrInvalid) {
		t.Fatalf("unary with no token to send: %v, want ErrInvalid (nothing sent)", err)
	}
	if err := watch(0); !errors.Is(err, fence.ErrInvalid) {
		t.Fatalf("stream with no token to send: %v, want ErrInvalid", err)
	}
	if got := ran.Load(); got != 4 {
		t.Fatalf("%d calls reached a handler, want the 4 fresh ones", got)
	}
	// A call without the client interceptor carries no token.
	cc, _ := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer cc.Close()
	bare := healthpb.NewHealthClient(cc)
	if _, err := bare.Check(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a call with no token: %v, want InvalidArgument", err)
	}
	md := metadata.Pairs(fence.ResourceMetadata, "jobs", fence.TokenMetadata, "seven")
	if _, err := bare.Check(metadata.NewOutgoingContext(ctx, md), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a call with a bad token: %v, want InvalidArgument", err)
	}
}

// A failing store refuses every call: Unavailable, no handler run.
func TestGRPCFailsClosed(t *testing.T) {
	t.Parallel()
	db := sqliteDB(t)
	db.Close()
	addr, ran := grpcServer(t, fence.SQLStore{DB: db})
	var token atomic.Int64
	token.Store(3)
	c := grpcClient(t, addr, "jobs", &token)
	if _, err := c.Check(ctxT(t, 10*time.Second), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("with a closed database: %v, want Unavailable", err)
	}
	if ran.Load() != 0 {
		t.Fatal("a handler ran behind a failed store")
	}
}
