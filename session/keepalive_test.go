package session_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// A session renews on one long-lived keepalive stream: every new stream
// authenticates again on an auth-enabled cluster (a bcrypt check on the
// server), and a renewal per stream once made a 2 s session authenticate
// 15 times in 8 s.
func TestOneKeepaliveStreamPerSession(t *testing.T) {
	t.Parallel()
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(20 * time.Second)
	for c.Get("LeaseKeepAlive") < 12 { // a renewal every 0.5 s
		if time.Now().After(deadline) || s.Err() != nil {
			t.Fatalf("12 renewals not seen: %s, session %v", c, s.Err())
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
	if n := c.Get("LeaseKeepAlive.Open"); n != 1 {
		t.Fatalf("12 renewals opened %d keepalive streams, want 1 (%s)", n, c)
	}
}

// TestAuthenticationsPerSession measures, on an auth-enabled server at
// etcd's default bcrypt cost, the keepalive streams and authentications
// of a coord session and of etcd's concurrency.Session over the same
// renewals, side by side. It is a measurement for the README and the
// closing note; it asserts only coord's one stream.
func TestAuthenticationsPerSession(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15 s measurement")
	}
	t.Parallel()
	own := etcdtest.NewServer(t) // fsync on, default bcrypt cost
	ctx := ctxT(t, 120*time.Second)
	if err := etcdtest.EnableAuth(ctx, own.Client(), "rootpw"); err != nil {
		t.Fatal(err)
	}
	mk := func() (*etcdtest.Counter, func()) {
		c := etcdtest.NewCounter()
		cli, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"), etcdtest.WithCounter(c))
		if err != nil {
			t.Fatal(err)
		}
		return c, func() { cli.Close() }
	}
	cc, closeC := mk()
	defer closeC()
	ec, closeE := mk()
	defer closeE()
	coordCli, _ := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"), etcdtest.WithCounter(cc))
	defer coordCli.Close()
	etcdCli, _ := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"), etcdtest.WithCounter(ec))
	defer etcdCli.Close()
	cc.Reset()
	ec.Reset()
	start := time.Now()
	s, err := session.New(ctx, coordCli, session.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	es, err := concurrency.NewSession(etcdCli, concurrency.WithTTL(2))
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	for time.Since(start) < 15*time.Second && s.Err() == nil {
		time.Sleep(100 * time.Millisecond) // a measurement window, not a synchronization
	}
	perMin := func(n int64) float64 { return float64(n) * float64(time.Minute) / float64(time.Since(start)) }
	t.Logf("per session per minute, TTL 2s, auth at etcd's default bcrypt cost:")
	t.Logf("  coord session:          %5.1f keepalive streams, %5.1f authentications, %5.1f renewals (%s)",
		perMin(cc.Get("LeaseKeepAlive.Open")), perMin(cc.Get("Authenticate")), perMin(cc.Get("LeaseKeepAlive")), cc)
	t.Logf("  concurrency.Session:    %5.1f keepalive streams, %5.1f authentications, %5.1f renewals (%s)",
		perMin(ec.Get("LeaseKeepAlive.Open")), perMin(ec.Get("Authenticate")), perMin(ec.Get("LeaseKeepAlive")), ec)
	if s.Err() != nil {
		t.Fatalf("coord session lost: %v", s.Err())
	}
	if n := cc.Get("LeaseKeepAlive.Open"); n != 1 {
		t.Fatalf("coord session opened %d keepalive streams, want 1", n)
	}
}
