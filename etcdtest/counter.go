package etcdtest

import (
	"context"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Counter counts the etcd RPCs a client makes, by method, so tests and
// benchmarks can state "RPCs per operation". Unary calls are counted once
// per attempt (retries included). On streams, every message the client
// sends is counted as its own RPC under a name that says what it was:
// "Watch.Create", "Watch.Cancel", "LeaseKeepAlive"; and every stream the
// client opens is counted as "<Method>.Open" ("LeaseKeepAlive.Open",
// "Watch.Open"), which on an auth-enabled cluster is also an
// authentication. A Txn that carries a nested Txn op is counted once more
// as "Txn.Nested": etcd before 3.5.26 and 3.6.9 skips permission checks on
// nested ops. It also counts the bytes of the replies to reads ("Range
// bytes" and "Txn bytes"), for "bytes read per operation", and the keys
// the server counted for them ("Reads.Counted", see Counted). A Counter
// is safe for concurrent use; attach it with WithCounter.
type Counter struct {
	mu sync.Mutex
	n  map[string]int64
}

// NewCounter returns an empty Counter.
func NewCounter() *Counter { return &Counter{n: map[string]int64{}} }

func (c *Counter) add(method string) {
	c.mu.Lock()
	c.n[method]++
	c.mu.Unlock()
}

// Get returns the count for one method, such as "Txn" or "Range".
func (c *Counter) Get(method string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method]
}

// Snapshot returns a copy of all counts.
func (c *Counter) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.n)
}

// Total returns the sum over the given methods, or, when none are named,
// over every RPC (not the derived counts: stream opens, nested Txns,
// bytes).
func (c *Counter) Total(methods ...string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var t int64
	if len(methods) == 0 {
		for k, v := range c.n {
			if !derived(k) {
				t += v
			}
		}
		return t
	}
	for _, m := range methods {
		t += c.n[m]
	}
	return t
}

// Bytes returns the bytes of every read reply counted (Range and Txn).
func (c *Counter) Bytes() int64 { return c.Total("Range bytes", "Txn bytes") }

func derived(name string) bool {
	return strings.HasSuffix(name, ".Open") || strings.HasSuffix(name, " bytes") || name == "Txn.Nested" || name == "Reads.Counted"
}

// Reset sets every count to zero.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.n = map[string]int64{}
	c.mu.Unlock()
}

// String lists the counts in a stable order, e.g. "Put=1 Txn=2".
func (c *Counter) String() string {
	snap := c.Snapshot()
	names := make([]string, 0, len(snap))
	for k := range snap {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(snap[k], 10))
	}
	return b.String()
}

// DialOptions returns the gRPC options that make a client report to c.
// Append them to clientv3.Config.DialOptions.
func (c *Counter) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			name := shortMethod(method)
			c.add(name)
			if t, ok := req.(*pb.TxnRequest); ok && nested(t) {
				c.add("Txn.Nested")
			}
			err := invoker(ctx, method, req, reply, cc, opts...)
			switch r := reply.(type) {
			case *pb.RangeResponse:
				c.addN("Range bytes", int64(proto.Size(r)))
				c.addN("Reads.Counted", r.Count)
			case *pb.TxnResponse:
				c.addN("Txn bytes", int64(proto.Size(r)))
				c.addN("Reads.Counted", counted(r.Responses))
			}
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			name := shortMethod(method)
			c.add(name + ".Open")
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return s, err
			}
			return &countingStream{ClientStream: s, c: c, method: name}, nil
		}),
	}
}

func (c *Counter) addN(name string, n int64) {
	c.mu.Lock()
	c.n[name] += n
	c.mu.Unlock()
}

// Counted returns how many live keys the server counted for the reads
// counted (their replies' Count, summed over a Txn's reads): etcd visits
// every key of a range it reads, to count it, however small the limit, so
// this is the server's work for those reads as a line grows, which the
// RPCs and bytes do not show.
func (c *Counter) Counted() int64 { return c.Get("Reads.Counted") }

// counted sums the Count of a Txn's range replies.
func counted(rs []*pb.ResponseOp) int64 {
	var n int64
	for _, r := range rs {
		if rr := r.GetResponseRange(); rr != nil {
			n += rr.Count
		}
	}
	return n
}

// nested reports whether a Txn carries a Txn among its ops.
func nested(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			if op.GetRequestTxn() != nil {
				return true
			}
		}
	}
	return false
}

func shortMethod(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

type countingStream struct {
	grpc.ClientStream
	c      *Counter
	method string
}

func (s *countingStream) SendMsg(m any) error {
	name := s.method
	if w, ok := m.(*pb.WatchRequest); ok {
		switch {
		case w.GetCreateRequest() != nil:
			name = "Watch.Create"
		case w.GetCancelRequest() != nil:
			name = "Watch.Cancel"
		default:
			name = "Watch.Progress"
		}
	}
	s.c.add(name)
	return s.ClientStream.SendMsg(m)
}
