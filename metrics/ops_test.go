package metrics_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// until polls cond until it holds or d passes.
func until(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func leaseHex(s *session.Session) string { return fmt.Sprintf("%016x", int64(s.Lease())) }

// coord_session_alive is 1 per live session and goes 0 on Close and on a
// revoked lease; coord_session_etcd_reachable goes 0 while the session's
// keepalives go unanswered (a blackholed connection) and back to 1 when
// they are answered again, with no request of its own.
func TestSessionAliveAndReachable(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)

	closed, err := session.New(ctx, srv.Client(), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := session.New(ctx, srv.Client(), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	defer revoked.Close()
	for _, s := range []*session.Session{closed, revoked} {
		if got := value(t, reg, "coord_session_alive", "lease", leaseHex(s)); got != 1 {
			t.Fatalf("alive of a live session = %v", got)
		}
		if got := value(t, reg, "coord_session_etcd_reachable", "lease", leaseHex(s)); got != 1 {
			t.Fatalf("reachable of a live session = %v", got)
		}
	}
	closed.Close()
	if got := value(t, reg, "coord_session_alive", "lease", leaseHex(closed)); got != 0 {
		t.Errorf("alive after Close = %v, want 0", got)
	}
	if got := value(t, reg, "coord_session_etcd_reachable", "lease", leaseHex(closed)); got != -1 {
		t.Errorf("a closed session still reports reachability (%v)", got)
	}
	if _, err := srv.Client().Revoke(ctx, revoked.Lease()); err != nil {
		t.Fatal(err)
	}
	<-revoked.Done()
	if got := value(t, reg, "coord_session_alive", "lease", leaseHex(revoked)); got != 0 {
		t.Errorf("alive after the lease's revocation = %v, want 0", got)
	}

	// Behind a proxy: a 6 s TTL renews every 1.5 s, so a renewal
	// unanswered for 2.25 s reads unreachable while the session still
	// trusts its lease (until 5.4 s after the last answer).
	p := etcdtest.NewProxy(t, srv.Endpoints()[0])
	cli := etcdtest.NewTestClient(t, p.Endpoints())
	s, err := session.New(ctx, cli, session.WithMetrics(m), session.WithTTL(6*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reachable := func() float64 { return value(t, reg, "coord_session_etcd_reachable", "lease", leaseHex(s)) }
	until(t, 5*time.Second, "reachable", func() bool { return reachable() == 1 })
	p.Blackhole()
	until(t, 5*time.Second, "unreachable while blackholed", func() bool { return reachable() == 0 })
	if s.Err() != nil {
		t.Fatalf("the session ended before its reachability did: %v", s.Err())
	}
	p.Restore()
	until(t, 5*time.Second, "reachable again after the blackhole", func() bool { return reachable() == 1 })
	if s.Err() != nil || value(t, reg, "coord_session_alive", "lease", leaseHex(s)) != 1 {
		t.Fatalf("the session did not survive the short blackhole: %v", s.Err())
	}
}

// Ended sessions' alive series are bounded: a program making many
// sessions keeps the last few at 0, not all.
func TestEndedSessionsAreBounded(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	for range 20 {
		s, err := session.New(ctx, srv.Client(), session.WithMetrics(m))
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	if n := testutil.CollectAndCount(m, "coord_session_alive"); n != 16 {
		t.Fatalf("%d alive series after 20 ended sessions, want 16", n)
	}
}

// coord_queue_depth follows enqueue, claim, ack and dead-letter, each
// read being one count-only Txn at most once per depth interval.
func TestQueueDepth(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := metrics.New(metrics.WithDepthInterval(0))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s, err := session.New(ctx, srv.Client(), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := queue.New(srv.Client(), "jobs", queue.WithMetrics(m))
	depth := func() string {
		t.Helper()
		var b strings.Builder
		for _, st := range []string{"ready", "delayed", "claimed", "dead"} {
			fmt.Fprintf(&b, "%s=%v ", st, value(t, reg, "coord_queue_depth", "name", "jobs", "state", st))
		}
		return strings.TrimSpace(b.String())
	}
	check := func(want string) {
		t.Helper()
		if got := depth(); got != want {
			t.Fatalf("depth %s, want %s", got, want)
		}
	}
	check("ready=0 delayed=0 claimed=0 dead=0")
	for range 3 {
		if _, err := q.Enqueue(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Enqueue(ctx, []byte("later"), queue.WithDelay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("ready=3 delayed=1 claimed=0 dead=0")
	a, err := q.Claim(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.Claim(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	check("ready=1 delayed=1 claimed=2 dead=0")
	if err := a.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	check("ready=1 delayed=1 claimed=1 dead=0")
	if err := b.Dead(ctx, "bad"); err != nil {
		t.Fatal(err)
	}
	check("ready=1 delayed=1 claimed=0 dead=1")

	// A cached reading answers scrapes for the depth interval.
	cached := metrics.New(metrics.WithDepthInterval(time.Hour))
	creg := prometheus.NewRegistry()
	creg.MustRegister(cached)
	cq := queue.New(srv.Client(), "jobs", queue.WithMetrics(cached))
	if got := value(t, creg, "coord_queue_depth", "name", "jobs", "state", "ready"); got != 1 {
		t.Fatalf("ready = %v, want 1", got)
	}
	if _, err := cq.Enqueue(ctx, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if got := value(t, creg, "coord_queue_depth", "name", "jobs", "state", "ready"); got != 1 {
		t.Fatalf("ready within the depth interval = %v, want the cached 1", got)
	}
}

// The depth of a queue whose reads fail is left out and counted.
func TestQueueDepthReadFailure(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	cli := etcdtest.NewTestClient(t, srv.Endpoints())
	m := metrics.New(metrics.WithDepthInterval(0))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	queue.New(cli, "jobs", queue.WithMetrics(m))
	if got := value(t, reg, "coord_queue_depth", "name", "jobs", "state", "ready"); got != 0 {
		t.Fatalf("ready = %v", got)
	}
	cli.Close()
	if got := value(t, reg, "coord_queue_depth", "name", "jobs", "state", "ready"); got != -1 {
		t.Fatalf("a queue whose read failed reports ready = %v", got)
	}
	// Two scrapes since the client closed, each reading again (interval 0).
	if got := value(t, reg, "coord_queue_depth_read_failures_total", "name", "jobs"); got != 2 {
		t.Fatalf("read failures = %v, want 2", got)
	}
}

// coord_build_info is 1, labelled with the module's version and the Go
// version.
func TestBuildInfo(t *testing.T) {
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	if got := value(t, reg, "coord_build_info", "go_version", runtime.Version()); got != 1 {
		t.Fatalf("build_info{go_version=%q} = %v", runtime.Version(), got)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "coord_build_info" {
			for _, lp := range mf.Metric[0].Label {
				if lp.GetName() == "version" && lp.GetValue() == "" {
					t.Fatal("empty version label")
				}
			}
		}
	}
	if n := testutil.CollectAndCount(m, "coord_build_info"); n != 1 {
		t.Fatalf("%d coord_build_info series, want 1", n)
	}
}

// A depth scrape costs one Txn per queue when its reading is older than
// the depth interval and nothing otherwise, and the session series cost
// no request at all; the Txn's reads are count-only, so its bytes stay
// flat however many messages (the server still counts them: Counted).
func TestScrapeCost(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := etcdtest.NewCounter()
	cli := etcdtest.NewTestClient(t, srv.Endpoints(), etcdtest.WithCounter(c))
	m := metrics.New(metrics.WithDepthInterval(time.Hour))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s, err := session.New(ctx, cli, session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	q := queue.New(cli, "jobs", queue.WithMetrics(m))
	scrape := func() (rpcs, bytes, counted int64) {
		t.Helper()
		c.Reset()
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		return c.Total("Txn", "Range", "Put", "DeleteRange", "Watch.Create", "LeaseGrant", "LeaseTimeToLive"), c.Bytes(), c.Counted()
	}
	var small int64
	for _, n := range []int{10, 1000} {
		var batch []queue.Entry
		for range 50 {
			batch = append(batch, queue.Entry{Payload: []byte("x")})
		}
		for range n / 50 {
			if _, err := q.EnqueueBatch(ctx, batch[:min(n, 50)]); err != nil {
				t.Fatal(err)
			}
		}
		if n < 50 {
			if _, err := q.EnqueueBatch(ctx, batch[:n]); err != nil {
				t.Fatal(err)
			}
		}
		// A fresh Metrics reads at once; the one above, within its hour, never.
		fresh := metrics.New(metrics.WithDepthInterval(time.Hour))
		freg := prometheus.NewRegistry()
		freg.MustRegister(fresh)
		queue.New(cli, "jobs", queue.WithMetrics(fresh))
		c.Reset()
		if _, err := freg.Gather(); err != nil {
			t.Fatal(err)
		}
		rpcs, bytes := c.Get("Txn"), c.Bytes()
		t.Logf("%d messages: first scrape %d Txn, %d bytes, %d keys counted by the server", n, rpcs, bytes, c.Counted())
		if rpcs != 1 || c.Total("Range", "Put", "DeleteRange") != 0 {
			t.Fatalf("a depth read: %s, want one Txn", c)
		}
		if small == 0 {
			small = bytes
		} else if bytes > small+16 {
			t.Fatalf("a depth read's bytes grew with the queue: %d at 10 messages, %d at 1000", small, bytes)
		}
		if n == 10 {
			scrape() // the first of the hour-long Metrics: reads once
		}
		if rpcs, _, _ := scrape(); rpcs != 0 {
			t.Fatalf("a scrape within the depth interval made %d requests: %s", rpcs, c)
		}
	}
}
