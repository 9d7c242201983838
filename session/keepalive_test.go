package session_test

import (
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// BenchmarkAuthenticationsPerSession measures, on an auth-enabled server
// at etcd's default bcrypt cost, the keepalive streams and the
// authentications of a coord session and of etcd's concurrency.Session
// over the same 15 s of renewals (TTL 2 s), side by side. Run it with
// go test -run x -bench AuthenticationsPerSession ./session.
func BenchmarkAuthenticationsPerSession(b *testing.B) {
	own := etcdtest.NewServer(b) // fsync on, default bcrypt cost
	ctx := etcdtest.Context(b, 120*time.Second)
	if err := etcdtest.EnableAuth(ctx, own.Client(), "rootpw"); err != nil {
		b.Fatal(err)
	}
	client := func(c *etcdtest.Counter) *clientv3.Client {
		cli, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"), etcdtest.WithCounter(c),
			etcdtest.WithClientConfig(func(cfg *clientv3.Config) { cfg.DialTimeout = 30 * time.Second }))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cli.Close() })
		return cli
	}
	cc, ec := etcdtest.NewCounter(), etcdtest.NewCounter()
	coordCli, etcdCli := client(cc), client(ec)
	window := 15 * time.Second
	for b.Loop() {
		cc.Reset()
		ec.Reset()
		start := time.Now()
		s, err := session.New(ctx, coordCli, session.WithTTL(2*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		es, err := concurrency.NewSession(etcdCli, concurrency.WithTTL(2))
		if err != nil {
			b.Fatal(err)
		}
		for time.Since(start) < window && s.Err() == nil {
			time.Sleep(100 * time.Millisecond) // a measurement window, not a synchronization
		}
		if s.Err() != nil {
			b.Fatalf("coord session lost: %v", s.Err())
		}
		b.Logf("in %v, TTL 2s: coord session: %d keepalive streams, %d authentications, %d renewals (%s)",
			window, cc.Get("LeaseKeepAlive.Open"), cc.Get("Authenticate"), cc.Get("LeaseKeepAlive"), cc)
		b.Logf("in %v, TTL 2s: concurrency.Session: %d keepalive streams, %d authentications, %d renewals (%s)",
			window, ec.Get("LeaseKeepAlive.Open"), ec.Get("Authenticate"), ec.Get("LeaseKeepAlive"), ec)
		b.ReportMetric(float64(cc.Get("Authenticate"))*float64(time.Minute)/float64(window), "coord-auths/min")
		b.ReportMetric(float64(ec.Get("Authenticate"))*float64(time.Minute)/float64(window), "etcd-auths/min")
		s.Close()
		es.Close()
	}
}
