package schedule_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ran is one call of fn.
type ran struct {
	replica string
	tick    schedule.Tick
	local   time.Time // the replica's clock when fn started
	world   time.Time // true time then
}

// fleet is replicas of one schedule, each on its own client (its own
// watch, as separate processes have) and session, with clocks on one
// world.
type fleet struct {
	t    *testing.T
	w    *world
	name string
	spec schedule.Spec
	opts []schedule.Option
	job  func(ctx context.Context, replica string, t schedule.Tick) error
	// counter, when set, counts every replica's RPCs.
	counter *etcdtest.Counter
	// sessOpts are the options of every replica's session.
	sessOpts []session.Option

	mu      sync.Mutex
	runs    []ran
	ch      chan struct{}
	members []*member
}

func newFleet(t *testing.T, w *world, spec schedule.Spec, opts ...schedule.Option) *fleet {
	return &fleet{t: t, w: w, name: etcdtest.Name(t), spec: spec, opts: opts, ch: make(chan struct{})}
}

func (f *fleet) changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch
}

func (f *fleet) poke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.ch)
	f.ch = make(chan struct{})
}

func (f *fleet) note(r ran) {
	f.mu.Lock()
	f.runs = append(f.runs, r)
	f.mu.Unlock()
	f.poke()
}

// ran returns the runs so far, in call order.
func (f *fleet) ran() []ran {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.runs)
}

// member is one replica.
type member struct {
	name   string
	clock  *fakeClock
	cli    *clientv3.Client
	sess   *session.Session
	sched  *schedule.Schedule
	cancel context.CancelFunc
	done   chan error
	joined time.Time // its clock when it joined
}

// join starts a replica called name whose clock is off true time by
// offset.
func (f *fleet) join(name string, offset func(time.Time) time.Duration) *member {
	f.t.Helper()
	var copts []etcdtest.ClientOption
	if f.counter != nil {
		copts = append(copts, etcdtest.WithCounter(f.counter))
	}
	cli := etcdtest.NewTestClient(f.t, srv.Endpoints(), copts...)
	sess, err := session.New(etcdtest.Context(f.t, 10*time.Second), cli, f.sessOpts...)
	if err != nil {
		f.t.Fatal(err)
	}
	m := &member{name: name, clock: f.w.Clock(offset), cli: cli, sess: sess, done: make(chan error, 1)}
	m.sched = schedule.New(cli, f.name, f.spec, append(slices.Clone(f.opts), schedule.WithClock(m.clock), schedule.WithReplica(name))...)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.joined = m.clock.Now()
	go func() {
		m.done <- m.sched.Run(ctx, sess, func(ctx context.Context, t schedule.Tick) error {
			f.note(ran{replica: name, tick: t, local: m.clock.Now(), world: f.w.Now()})
			if f.job != nil {
				return f.job(ctx, name, t)
			}
			return nil
		})
		f.poke()
	}()
	f.t.Cleanup(func() { m.stop() })
	f.mu.Lock()
	f.members = append(f.members, m)
	f.mu.Unlock()
	return m
}

// stop ends the replica's Run (its runs are cancelled and recorded) and
// closes its session.
func (m *member) stop() {
	m.cancel()
	<-m.done
	m.done <- nil // for the next stop
	m.sess.Close()
}

// kill revokes the replica's lease, as its death would once the TTL ran
// out: every key it holds goes, and it records nothing.
func (m *member) kill(t *testing.T) {
	t.Helper()
	if _, err := srv.Client().Revoke(etcdtest.Context(t, 5*time.Second), m.sess.Lease()); err != nil {
		t.Fatal(err)
	}
	m.stop()
}

// eventually polls cond (it reads etcd) until it holds, for at most d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

// status reads the schedule's status through any client.
func (f *fleet) status(t *testing.T) schedule.Status {
	t.Helper()
	st, err := schedule.New(srv.Client(), f.name, f.spec, f.opts...).Status(etcdtest.Context(t, 5*time.Second))
	if err != nil {
		return schedule.Status{}
	}
	return st
}

func (f *fleet) history(t *testing.T) []schedule.Run {
	t.Helper()
	h, err := schedule.New(srv.Client(), f.name, f.spec, f.opts...).History(etcdtest.Context(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// decided waits until the schedule has decided tick at.
func (f *fleet) decided(t *testing.T, at time.Time) {
	t.Helper()
	eventually(t, 10*time.Second, "tick "+at.Format("15:04:05.000")+" decided", func() bool {
		return !f.status(t).Last.Before(at)
	})
}

// idle waits until no run is going.
func (f *fleet) idle(t *testing.T) {
	t.Helper()
	eventually(t, 10*time.Second, "no run going", func() bool {
		st := f.status(t)
		return st.Name != "" && len(st.Running) == 0
	})
}

// started returns the ticks fn was called for, in call order.
func ticksOf(rs []ran) []time.Time {
	out := make([]time.Time, len(rs))
	for i, r := range rs {
		out[i] = r.tick.Time
	}
	return out
}

// seen waits until every replica's watch of the schedule (its process's
// mirror) has seen the state as it is in etcd now.
func (f *fleet) seen(t *testing.T) {
	t.Helper()
	ctx := etcdtest.Context(t, 10*time.Second)
	sp, err := keys.New(keys.DefaultRoot, keys.KindSchedule, f.name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Get(ctx, sp.Single("state"))
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("read state: %v", err)
	}
	f.mu.Lock()
	ms := slices.Clone(f.members)
	f.mu.Unlock()
	for _, m := range ms {
		mir := watch.For(m.cli).Mirror(sp.Base())
		err := mir.Read(ctx, resp.Kvs[0].ModRevision, func(*watch.View) {})
		mir.Release()
		if err != nil {
			t.Fatalf("replica %s's watch did not see revision %d: %v", m.name, resp.Kvs[0].ModRevision, err)
		}
	}
}
