package session_test

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A session is the liveness of one process: primitives built on it
// release everything when it ends.
func ExampleNew() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	ctx := context.Background()
	s, err := session.New(ctx, srv.Client(), session.WithTTL(10*time.Second))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("alive:", s.Err() == nil, "ttl:", s.TTL())

	s.Close() // revokes the lease: everything the session held goes now
	<-s.Done()
	fmt.Println("after Close:", s.Err())
	// Output:
	// alive: true ttl: 10s
	// after Close: session: closed
}

// Done tells a holder its lease is gone, before anyone else can be
// granted what it held.
func ExampleSession_Done() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	ctx := context.Background()
	s, _ := session.New(ctx, srv.Client())
	defer s.Close()

	srv.Client().Revoke(ctx, s.Lease()) // an operator revokes the lease
	<-s.Done()
	fmt.Println(s.Err() != nil)
	// Output: true
}

// Give the session an OpenTelemetry tracer provider and every primitive
// on it traces what it waits for and holds. Here the SDK's in-memory
// exporter collects the spans; a program would give its OTLP exporter.
func ExampleWithTracerProvider() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	ctx := context.Background()
	s, err := session.New(ctx, srv.Client(), session.WithTracerProvider(tp))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	mu := lock.NewMutex(s, "backup")
	if err := mu.Lock(ctx); err != nil {
		fmt.Println(err)
		return
	}
	token := mu.Token()
	mu.Unlock(ctx)

	for _, sp := range exp.GetSpans() {
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range sp.Attributes {
			attrs[kv.Key] = kv.Value
		}
		fmt.Println(sp.Name, attrs["coord.name"].AsString(), attrs["coord.outcome"].AsString(),
			attrs["coord.token"].AsInt64() == token)
	}
	// Output:
	// coord.lock.wait backup granted true
	// coord.lock.hold backup released true
}
