package election_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/session"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A clean Resign is never reported as a lost leadership: no warning, no
// lost_total, over many rounds (the loss watch used to see the resign's
// delete before Resign marked itself, 107 times in 300 under -race).
func TestCleanResignIsNeverALoss(t *testing.T) {
	t.Parallel()
	var logs syncBuf
	m := metrics.New()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	s := newSession(t, srv.Client(), root(t), session.WithMetrics(m), session.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx := ctxT(t, 60*time.Second)
	for i := range 300 {
		e := election.New(s, "resign")
		if err := e.Campaign(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		done := e.Done()
		if err := e.Resign(ctx); err != nil {
			t.Fatal(err)
		}
		if !closedWithin(done, time.Second) {
			t.Fatalf("round %d: Done open after Resign", i)
		}
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Fatalf("a clean resign was logged as a warning:\n%s", logs.String())
	}
	if g := gauge(t, m, "coord_lost_total", "resign"); g > 0 {
		t.Fatalf("coord_lost_total = %v after 300 clean resigns", g)
	}
}

// A refused permission ends Run at once with the error, with an error
// log line, instead of being retried silently until ctx ends; Observe by a
// user who may not read the election closes its channel early.
func TestRunStopsOnRefusedPermission(t *testing.T) {
	t.Parallel()
	own := etcdtest.NewServer(t, etcdtest.WithoutFsync(), etcdtest.WithBcryptCost(4)) // bcrypt.MinCost: logins are not what this tests
	ctx := ctxT(t, 60*time.Second)
	if err := etcdtest.EnableAuth(ctx, own.Client(), "rootpw"); err != nil {
		t.Fatal(err)
	}
	rootCli, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("root", "rootpw"))
	if err != nil {
		t.Fatal(err)
	}
	defer rootCli.Close()
	// "reader" may read and write its sessions' root, and only read the
	// election's keys.
	if err := etcdtest.AddUser(ctx, rootCli, "reader", "pw", "app/session/", true); err != nil {
		t.Fatal(err)
	}
	if _, err := rootCli.RoleGrantPermission(ctx, "reader", "app/election/", "app/election0", 0 /* read */); err != nil {
		t.Fatal(err)
	}
	cli, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("reader", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var logs syncBuf
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	err = election.Run(rctx, cli, "api", "host-a", func(context.Context) error { return nil },
		election.WithPrefix("app/"), election.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if !errors.Is(err, rpctypes.ErrPermissionDenied) || time.Since(start) > 5*time.Second {
		t.Fatalf("Run by a read-only user = %v after %v, want permission denied at once", err, time.Since(start))
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("the refusal was not logged at error level:\n%s", logs.String())
	}

	// Observe by a user with no read on the election at all.
	if err := etcdtest.AddUser(ctx, rootCli, "blind", "pw", "app/session/", true); err != nil {
		t.Fatal(err)
	}
	blind, err := etcdtest.NewClient(own.Endpoints(), etcdtest.WithAuth("blind", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer blind.Close()
	s, err := session.New(ctx, blind, session.WithPrefix("app/"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch := election.New(s, "api").Observe(ctx)
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("Observe without read permission sent a leader")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Observe without read permission did not close within 5s")
	}
}

// A candidate that gives up just as the leadership is handed to it
// leaves no leader key behind on its lease: the handover's leader key
// names a candidacy that is gone, and must go with it (it used to stay
// until the session ended, a stray key on a live lease).
func TestAbandonedCandidateTakesItsHandoverBack(t *testing.T) {
	t.Parallel()
	r := root(t)
	ctx := ctxT(t, 90*time.Second)
	ls := newSession(t, srv.Client(), r)
	ws := newSession(t, srv.Client(), r)
	raced := 0
	for i := 0; i < 300 && raced < 3; i++ {
		leader := election.New(ls, "late")
		if err := leader.Campaign(ctx, "leader"); err != nil {
			t.Fatal(err)
		}
		w := election.New(ws, "late")
		wctx, cancel := context.WithCancel(ctx)
		res := campaignAsync(wctx, w, "waiter")
		eventually(t, 5*time.Second, "waiter queued", func() bool { return countCandidates(t, r) == 2 })
		// Give up and be handed the leadership at once: whichever etcd
		// applies first, nothing of the waiter's may stay behind.
		cancel()
		terr := leader.Transfer(ctx, "waiter")
		werr := <-res
		switch {
		case werr == nil:
			if err := w.Resign(ctx); err != nil {
				t.Fatal(err)
			}
		case terr == nil:
			raced++
		}
		if terr != nil {
			if err := leader.Resign(ctx); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 5*time.Second, "nothing left on the waiter's lease", func() bool {
			resp, err := srv.Client().Get(ctx, r+"election/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range resp.Kvs {
				if clientv3.LeaseID(kv.Lease) == ws.Lease() {
					t.Logf("round %d (campaign %v, transfer %v): %s on the waiter's lease", i, werr, terr, kv.Key)
					return false
				}
			}
			return true
		})
	}
	if raced == 0 {
		t.Fatal("no handover landed on a candidate that had given up: the test proved nothing")
	}
}
