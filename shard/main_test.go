package shard_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
	"github.com/coord-go/coord/shard"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var srv *etcdtest.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }

var seq atomic.Int64

// root returns a fresh root prefix, so each test sees only its own keys.
func root(t testing.TB) string {
	return fmt.Sprintf("t%d-%s/", seq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
}

func ctxT(t testing.TB, d time.Duration) context.Context { return etcdtest.Context(t, d) }

// interval is one owner's work on a shard: from work's call to its
// return.
type interval struct {
	member     string
	token      int64
	start, end time.Time
	cause      error
}

// recorder is the overlap detector: every work function of every member
// reports to it when it starts and when it returns, and it flags a start
// while another member's work on the same shard has not returned, and a
// token that does not increase. A member "killed" as a crashed process is
// (its lease revoked) does no more work from that moment: its open
// intervals end there, and what its goroutines report later is ignored.
type recorder struct {
	mu         sync.Mutex
	open       map[string]*interval // by shard
	done       map[string][]interval
	last       map[string]int64 // by shard: the last token that started
	dead       map[string]bool
	starts     int
	violations []string
}

func newRecorder() *recorder {
	return &recorder{open: map[string]*interval{}, done: map[string][]interval{}, last: map[string]int64{}, dead: map[string]bool{}}
}

func (r *recorder) violate(format string, a ...any) {
	r.violations = append(r.violations, fmt.Sprintf(format, a...))
}

// work returns the work function of member id: it reports, waits for its
// context to end, then (after hold, to make drains take time) reports
// again and returns.
func (r *recorder) work(id string, hold time.Duration) func(ctx context.Context, sh *shard.Shard) error {
	return func(ctx context.Context, sh *shard.Shard) error {
		r.begin(id, sh)
		<-ctx.Done()
		if hold > 0 {
			time.Sleep(hold)
		}
		r.finish(id, sh, context.Cause(ctx))
		return nil
	}
}

func (r *recorder) begin(id string, sh *shard.Shard) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead[id] {
		return
	}
	now := time.Now()
	if o := r.open[sh.Name()]; o != nil {
		r.violate("shard %s: %s (token %d) started at %s while %s (token %d) still worked on it since %s",
			sh.Name(), id, sh.Token(), now.Format("15:04:05.000"), o.member, o.token, o.start.Format("15:04:05.000"))
	}
	if sh.Token() <= r.last[sh.Name()] {
		r.violate("shard %s: token %d of %s after token %d", sh.Name(), sh.Token(), id, r.last[sh.Name()])
	}
	r.last[sh.Name()] = sh.Token()
	r.open[sh.Name()] = &interval{member: id, token: sh.Token(), start: now}
	r.starts++
}

func (r *recorder) finish(id string, sh *shard.Shard, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o := r.open[sh.Name()]
	if r.dead[id] || o == nil || o.member != id || o.token != sh.Token() {
		return
	}
	o.end, o.cause = time.Now(), cause
	r.done[sh.Name()] = append(r.done[sh.Name()], *o)
	delete(r.open, sh.Name())
}

// kill ends member id's work at once, as a crash would.
func (r *recorder) kill(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead[id] = true
	for name, o := range r.open {
		if o.member == id {
			o.end, o.cause = time.Now(), errors.New("crashed")
			r.done[name] = append(r.done[name], *o)
			delete(r.open, name)
		}
	}
}

// ownedBy waits until every one of n shards has a work running on one of
// ids, and returns when the last of them started.
func (r *recorder) ownedBy(t testing.TB, n int, ids []string, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		var last time.Time
		count := 0
		for _, o := range r.open {
			if contains(ids, o.member) {
				count++
				if o.start.After(last) {
					last = o.start
				}
			}
		}
		r.mu.Unlock()
		if count == n {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d shards worked on by %v after %v", count, n, ids, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Starts returns how many works started so far.
func (r *recorder) Starts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.starts
}

func (r *recorder) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.violations {
		t.Error(v)
	}
}

// causes counts, over every interval ended so far (of the given members,
// when any are named), the causes of the works' contexts.
func (r *recorder) causes(of ...string) map[string]int { return r.causesSince(time.Time{}, of...) }

// causesSince is causes for the intervals that ended after t.
func (r *recorder) causesSince(t time.Time, of ...string) map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, is := range r.done {
		for _, i := range is {
			if len(of) > 0 && !contains(of, i.member) || i.end.Before(t) {
				continue
			}
			switch {
			case errors.Is(i.cause, shard.ErrMoved):
				out["moved"]++
			case errors.Is(i.cause, shard.ErrLost):
				out["lost"]++
			default:
				out["other"]++
			}
		}
	}
	return out
}

// member is one simulated process: its own client (behind proxies when
// asked, so faults can be aimed at it alone), session, membership and
// Run.
type member struct {
	id   string
	px   etcdtest.Proxies
	cli  *clientv3.Client
	s    *session.Session
	m    *group.Membership
	mp   *shard.Map
	stop context.CancelFunc
	done chan error

	once sync.Once
	err  error

	endMu sync.Mutex
	ended error // what Run returned, once it did
	over  bool
}

// runEnded reports whether Run returned, and what.
func (m *member) runEnded() (error, bool) {
	m.endMu.Lock()
	defer m.endMu.Unlock()
	return m.ended, m.over
}

// wait returns what Run returned, waiting at most d.
func (m *member) wait(d time.Duration) (error, bool) {
	got := true
	m.once.Do(func() {
		select {
		case m.err = <-m.done:
		case <-time.After(d):
			got = false
		}
	})
	return m.err, got
}

// fleet is the members of one test's map.
type fleet struct {
	t         testing.TB
	endpoints []string
	root      string
	group     string
	name      string
	admin     *clientv3.Client
	n         int
	ttl       time.Duration
	rec       *recorder
	hold      time.Duration // how long works take to drain
	opts      []shard.Option
	sessOpts  []session.Option
	cliOpts   []etcdtest.ClientOption

	mu      sync.Mutex
	members map[string]*member
}

// newFleet makes a fleet of members of a map of n shards, on the etcd
// of endpoints, checked through admin (a client no fault touches).
func newFleet(t testing.TB, endpoints []string, admin *clientv3.Client, n int, ttl time.Duration) *fleet {
	return &fleet{t: t, endpoints: endpoints, admin: admin, root: root(t), group: "workers", name: "parts", n: n, ttl: ttl,
		rec: newRecorder(), members: map[string]*member{}}
}

// memberOpts are how one member is made.
type memberOpts struct {
	proxied bool          // its client goes through proxies of its own
	ttl     time.Duration // its session's TTL, if not the fleet's
	join    []group.JoinOption
	counter *etcdtest.Counter // counts its client's RPCs
}

// start joins id and runs the map on it.
func (f *fleet) start(id string, o memberOpts) *member {
	f.t.Helper()
	m := f.join(id, o)
	f.run(m)
	return m
}

// startAll joins every member at once, then starts every Run at once, as
// a fleet deployed together does.
func (f *fleet) startAll(o memberOpts, ids ...string) []*member {
	f.t.Helper()
	ms := make([]*member, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { ms[i] = f.join(id, o) })
	}
	wg.Wait()
	for _, m := range ms {
		if m == nil {
			f.t.FailNow()
		}
	}
	for _, m := range ms {
		f.run(m)
	}
	return ms
}

// join makes a member: a client, a session, a membership, a Map.
func (f *fleet) join(id string, o memberOpts) *member {
	m := &member{id: id, done: make(chan error, 1)}
	eps := f.endpoints
	if o.proxied {
		m.px = etcdtest.NewProxies(f.t, f.endpoints)
		eps = m.px.Endpoints()
	}
	copts := f.cliOpts
	if o.counter != nil {
		copts = append(copts[:len(copts):len(copts)], etcdtest.WithCounter(o.counter))
	}
	m.cli = etcdtest.NewTestClient(f.t, eps, copts...)
	ctx := ctxT(f.t, 20*time.Second)
	ttl := f.ttl
	if o.ttl != 0 {
		ttl = o.ttl
	}
	var err error
	if m.s, err = session.New(ctx, m.cli, append([]session.Option{session.WithTTL(ttl), session.WithPrefix(f.root)}, f.sessOpts...)...); err != nil {
		f.t.Error(err)
		return nil
	}
	f.t.Cleanup(func() { m.s.Close() })
	if m.m, err = group.Join(ctx, m.s, f.group, id, map[string]string{"addr": id + ":8080"}, o.join...); err != nil {
		f.t.Error(err)
		return nil
	}
	m.mp = shard.New(m.m, f.name, shard.Count(f.n), f.opts...)
	return m
}

// run starts m's Run.
func (f *fleet) run(m *member) {
	rctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	go func() {
		err := m.mp.Run(rctx, f.rec.work(m.id, f.hold))
		m.endMu.Lock()
		m.ended, m.over = err, true
		m.endMu.Unlock()
		m.done <- err
	}()
	f.t.Cleanup(func() {
		stop()
		if _, ok := m.wait(20 * time.Second); !ok {
			f.t.Errorf("member %s: Run did not return within 20s of its end", m.id)
		}
	})
	f.mu.Lock()
	f.members[m.id] = m
	f.mu.Unlock()
}

// leave stops id's Run and leaves the group, as a clean shutdown does.
func (f *fleet) leave(id string) {
	f.mu.Lock()
	m := f.members[id]
	delete(f.members, id)
	f.mu.Unlock()
	m.stop()
	if err, ok := m.wait(20 * time.Second); !ok || !errors.Is(err, context.Canceled) {
		f.t.Errorf("member %s: Run returned %v (returned: %v)", id, err, ok)
	}
	if err := m.m.Leave(ctxT(f.t, 5*time.Second)); err != nil {
		f.t.Errorf("member %s: Leave: %v", id, err)
	}
}

// forget drops id from the fleet (it was killed).
func (f *fleet) forget(id string) *member {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.members[id]
	delete(f.members, id)
	return m
}

func (f *fleet) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.members {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// state reads, straight from etcd, who owns each shard, and reports
// whether every shard is owned by one of the fleet's live members (its
// member key alive, on the owner key's lease) and, with balanced, whether
// every member owns its share within one.
func (f *fleet) state(balanced bool) (ok bool, why string) {
	cli := f.admin
	ctx := ctxT(f.t, 10*time.Second)
	view, err := group.New(cli, f.group, group.WithPrefix(f.root)).Members(ctx)
	if err != nil {
		return false, err.Error()
	}
	resp, err := cli.Get(ctx, f.root+"shard/"+f.name+"/o/", clientv3.WithPrefix())
	if err != nil {
		return false, err.Error()
	}
	want := f.ids()
	live := map[string]clientv3.LeaseID{}
	for _, m := range view.Members {
		live[m.ID] = m.Lease
	}
	for _, id := range want {
		if _, ok := live[id]; !ok {
			return false, fmt.Sprintf("member %s not in the group", id)
		}
	}
	owned := map[string]int{}
	n := 0
	for _, kv := range resp.Kvs {
		var id string
		if i := strings.Index(string(kv.Value), `"value":"`); i >= 0 {
			id = string(kv.Value)[i+9:]
			id = id[:strings.IndexByte(id, '"')]
		}
		l, ok := live[id]
		if !ok || l != clientv3.LeaseID(kv.Lease) || !contains(want, id) {
			return false, fmt.Sprintf("%s owned by %q, not a live member of the fleet", kv.Key, id)
		}
		owned[id]++
		n++
	}
	total := f.n
	if n != total {
		return false, fmt.Sprintf("%d of %d shards owned", n, total)
	}
	if balanced {
		lo, hi := total/len(want), (total+len(want)-1)/len(want)
		for _, id := range want {
			if owned[id] < lo || owned[id] > hi {
				return false, fmt.Sprintf("member %s owns %d shards, want %d to %d", id, owned[id], lo, hi)
			}
		}
	}
	return true, ""
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// waitState waits until state reports ok, and returns how long it took.
func (f *fleet) waitState(balanced bool, d time.Duration) time.Duration {
	f.t.Helper()
	start := time.Now()
	why := ""
	for time.Since(start) < d {
		var ok bool
		if ok, why = f.state(balanced); ok {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("not converged within %v: %s%s", d, why, f.ended())
	return 0
}

// ended describes the members whose Run returned, for a failure's
// message.
func (f *fleet) ended() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for id, m := range f.members {
		if err, ok := m.runEnded(); ok {
			fmt.Fprintf(&b, "; member %s's Run returned %v", id, err)
		}
		if err := m.s.Err(); err != nil {
			fmt.Fprintf(&b, "; member %s's session: %v", id, err)
		}
	}
	return b.String()
}

// groupWatch follows the fleet's group through the admin client.
func (f *fleet) groupWatch(ctx context.Context) <-chan group.View {
	return group.New(f.admin, f.group, group.WithPrefix(f.root)).Watch(ctx)
}
