package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// leaseAlive asks the server, from another client, whether the lease
// still exists.
func leaseAlive(t *testing.T, id clientv3.LeaseID) bool {
	resp, err := srv.Client().TimeToLive(ctxT(t, 5*time.Second), id)
	if err != nil {
		t.Fatalf("TimeToLive: %v", err)
	}
	return resp.TTL >= 0
}

// Not parallel: it counts the server's leases before and after.
func TestNewRejectsBadArguments(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	before, err := srv.Client().Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := session.New(ctx, nil); !errors.Is(err, session.ErrInvalid) || !strings.Contains(err.Error(), "nil etcd client") {
		t.Errorf("nil client: %v", err)
	}
	if _, err := session.New(ctx, srv.Client(), session.WithTTL(500*time.Millisecond)); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("TTL 500ms: %v", err)
	}
	// The embedded server's minimum TTL is 2s (1.5 × a 1s election timeout).
	_, err = session.New(ctx, srv.Client(), session.WithTTL(time.Second))
	if !errors.Is(err, session.ErrInvalid) || !strings.Contains(err.Error(), "minimum lease TTL of 2s") {
		t.Errorf("TTL 1s: %v", err)
	}
	if _, err := session.New(ctx, srv.Client(), session.WithPrefix("")); !errors.Is(err, session.ErrInvalid) {
		t.Errorf("empty prefix: %v", err)
	}
	// The rejected TTL left no lease behind.
	after, err := srv.Client().Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Leases) != len(before.Leases) {
		t.Errorf("%d leases before, %d after", len(before.Leases), len(after.Leases))
	}
}

func TestRevokeFiresDoneWithinOneSecond(t *testing.T) {
	t.Parallel()
	s, err := session.New(ctxT(t, 10*time.Second), srv.Client(), session.WithTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Err() != nil {
		t.Fatalf("fresh session: %v", s.Err())
	}
	start := time.Now()
	if _, err := srv.Client().Revoke(ctxT(t, 5*time.Second), s.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
		t.Logf("Done %v after revoke", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("Done did not fire within 1s of the revoke")
	}
	if err := s.Err(); !errors.Is(err, session.ErrExpired) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("Err = %v, want ErrExpired saying revoked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after loss: %v", err)
	}
	if err := s.Err(); !errors.Is(err, session.ErrExpired) {
		t.Fatalf("Close replaced the loss cause: %v", err)
	}
}

func TestKeepsLeaseAlivePastTTL(t *testing.T) {
	t.Parallel()
	s, err := session.New(ctxT(t, 10*time.Second), srv.Client(), session.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	select {
	case <-s.Done():
		t.Fatalf("session ended: %v", s.Err())
	case <-time.After(5 * time.Second):
	}
	if !leaseAlive(t, s.Lease()) {
		t.Fatal("lease gone on the server")
	}
	if !time.Now().Before(s.Deadline()) {
		t.Fatalf("deadline %v already passed", s.Deadline())
	}
}

func TestMarkerDeletedByHandIsNotALoss(t *testing.T) {
	t.Parallel()
	s, err := session.New(ctxT(t, 10*time.Second), srv.Client(), session.WithTTL(5*time.Second), session.WithPrefix("marker-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := ctxT(t, 10*time.Second)
	key := fmt.Sprintf("marker-test/session/%016x", int64(s.Lease()))
	if _, err := srv.Client().Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	// The session notices, finds its lease alive, and puts the key back.
	for {
		resp, err := srv.Client().Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 1 {
			break
		}
		select {
		case <-s.Done():
			t.Fatalf("session ended: %v", s.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if s.Err() != nil {
		t.Fatalf("session ended: %v", s.Err())
	}
}

func TestCloseRevokesEvenWithCancelledContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := session.New(ctx, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !errors.Is(s.Err(), session.ErrClosed) {
		t.Fatalf("Err = %v", s.Err())
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done open after Close")
	}
	if leaseAlive(t, s.Lease()) {
		t.Fatal("lease still alive after Close")
	}
}

// TestDoneFiresBeforeServerExpiry cuts a session's client off from etcd
// and checks, from a second client, that the lease still exists on the
// server when Done fires, in every one of 10 concurrent trials.
func TestDoneFiresBeforeServerExpiry(t *testing.T) {
	t.Parallel()
	const trials = 10
	leads := make([]time.Duration, trials)
	var wg sync.WaitGroup
	for i := 0; i < trials; i++ {
		p := etcdtest.NewProxy(t, srv.Endpoints()[0])
		cli, err := etcdtest.NewClient(p.Endpoints())
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithTTL(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			defer p.Restore() // so Close can revoke quickly
			// Let keepalives run, then cut the client off at a different
			// point of its keepalive cycle in each trial.
			select {
			case <-s.Done():
				t.Errorf("trial %d: session ended early: %v", i, s.Err())
				return
			case <-time.After(time.Duration(700+i*61) * time.Millisecond):
			}
			p.Blackhole()
			select {
			case <-s.Done():
			case <-time.After(10 * time.Second):
				t.Errorf("trial %d: Done did not fire", i)
				return
			}
			fired := time.Now()
			if !leaseAlive(t, s.Lease()) {
				t.Errorf("trial %d: lease already expired on the server when Done fired: %v", i, s.Err())
				return
			}
			if !errors.Is(s.Err(), session.ErrExpired) {
				t.Errorf("trial %d: Err = %v", i, s.Err())
			}
			for leaseAlive(t, s.Lease()) {
				time.Sleep(5 * time.Millisecond)
			}
			leads[i] = time.Since(fired)
		}()
	}
	wg.Wait()
	lo, hi := leads[0], leads[0]
	for _, l := range leads {
		lo, hi = min(lo, l), max(hi, l)
	}
	t.Logf("Done led server-side expiry by %v to %v over %d trials (TTL 2s)", lo, hi, trials)
}
