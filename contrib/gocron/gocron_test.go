package gocron_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	coordgocron "github.com/coord-go/coord/contrib/gocron"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	"github.com/go-co-op/gocron/v2"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

// span is one run of a job: where and when.
type span struct {
	replica    string
	start, end time.Time
	token      int64
}

type record struct {
	mu    sync.Mutex
	spans []span
}

func (r *record) add(s span) {
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
}

func (r *record) all() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// every starts a job every d on a new scheduler with opts, at the next
// multiple of d so every replica's ticks line up, and stops it at test end.
func every(t *testing.T, d time.Duration, name string, opt gocron.SchedulerOption, task func(ctx context.Context)) {
	t.Helper()
	sched, err := gocron.NewScheduler(opt)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(d).Add(d)
	if _, err := sched.NewJob(gocron.DurationJob(d), gocron.NewTask(task), gocron.WithName(name),
		gocron.WithStartAt(gocron.WithStartDateTime(start))); err != nil {
		t.Fatal(err)
	}
	sched.Start()
	t.Cleanup(func() { sched.Shutdown() })
}

// TestLockerExcludesRuns runs one job on three replicas' schedulers, each
// run lasting longer than the spread of the replicas' timers: no two runs
// ever overlap, each is fenced by a newer token, and the replicas that
// find the lock taken skip their run.
func TestLockerExcludesRuns(t *testing.T) {
	t.Parallel()
	name := etcdtest.Name(t)
	var rec record
	for i := range 3 {
		s, err := session.New(etcdtest.Context(t, 10*time.Second), srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		l := coordgocron.NewLocker(s)
		replica := fmt.Sprintf("r%d", i)
		every(t, 150*time.Millisecond, name, gocron.WithDistributedLocker(l), func(ctx context.Context) {
			start := time.Now()
			time.Sleep(40 * time.Millisecond) // the job's work, held under the lock
			rec.add(span{replica: replica, start: start, end: time.Now(), token: l.Held(name).Token()})
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(rec.all()) < 8 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	spans := rec.all()
	if len(spans) < 8 {
		t.Fatalf("%d runs in 20 s", len(spans))
	}
	slices.SortFunc(spans, func(a, b span) int { return a.start.Compare(b.start) })
	for i := 1; i < len(spans); i++ {
		if spans[i].start.Before(spans[i-1].end) {
			t.Errorf("runs overlapped: %+v and %+v", spans[i-1], spans[i])
		}
		if spans[i].token <= spans[i-1].token {
			t.Errorf("token went from %d to %d", spans[i-1].token, spans[i].token)
		}
	}
}

// TestLockerSkipsWhenTaken: Lock returns lock.ErrLocked while another
// replica holds the job's lock, and works again once it is let go.
func TestLockerSkipsWhenTaken(t *testing.T) {
	t.Parallel()
	ctx := etcdtest.Context(t, 10*time.Second)
	a, err := session.New(ctx, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := session.New(ctx, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	name := etcdtest.Name(t)
	la, lb := coordgocron.NewLocker(a), coordgocron.NewLocker(b)
	held, err := la.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Lock(ctx, name); !errors.Is(err, lock.ErrLocked) {
		t.Fatalf("second Lock: %v, want lock.ErrLocked", err)
	}
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Lock(ctx, name); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if lb.Held(name).Token() <= 0 {
		t.Errorf("Held has no token")
	}
}

// TestElectorRunsOnLeaderOnly runs one job on two replicas: only the
// leader's scheduler runs it, and when the leader stops campaigning the
// other takes over with a newer token.
func TestElectorRunsOnLeaderOnly(t *testing.T) {
	t.Parallel()
	name := etcdtest.Name(t)
	var rec record
	stops := map[string]context.CancelFunc{}
	done := map[string]chan error{}
	for _, replica := range []string{"a", "b"} {
		e := coordgocron.NewElector(srv.Client(), name, replica)
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan error, 1)
		stops[replica], done[replica] = cancel, ch
		go func() { ch <- e.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-ch })
		every(t, 100*time.Millisecond, name, gocron.WithDistributedElector(e), func(context.Context) {
			rec.add(span{replica: replica, start: time.Now(), token: e.Token()})
		})
	}
	wait := func(what string, cond func([]span) bool) {
		deadline := time.Now().Add(20 * time.Second)
		for !cond(rec.all()) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v", what, rec.all())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("3 runs", func(s []span) bool { return len(s) >= 3 })
	first := rec.all()[0]
	for _, s := range rec.all() {
		if s.replica != first.replica {
			t.Fatalf("runs on both replicas while one led: %+v", rec.all())
		}
	}
	stops[first.replica]()
	<-done[first.replica]
	done[first.replica] <- nil
	n := len(rec.all())
	wait("a run on the other replica", func(s []span) bool { return len(s) > n && s[len(s)-1].replica != first.replica })
	last := rec.all()[len(rec.all())-1]
	if last.token <= first.token {
		t.Errorf("new leader's token %d, old %d", last.token, first.token)
	}
	if err := coordgocron.NewElector(srv.Client(), name, "c").IsLeader(context.Background()); !errors.Is(err, coordgocron.ErrNotLeader) {
		t.Errorf("IsLeader before Run: %v", err)
	}
}
