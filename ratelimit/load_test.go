package ratelimit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/bench"
	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/ratelimit"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// simStart is where simulated time starts: any fixed time will do.
var simStart = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// proc is one simulated process: a client, a session and a limiter of its
// own, and its callers.
type proc struct {
	id      int
	cli     *clientv3.Client
	s       *session.Session
	l       *ratelimit.Limiter
	counter *etcdtest.Counter
	ctx     context.Context
	cancel  context.CancelFunc
}

// grant is one granted event: when (simulated time, the moment Wait
// returned: the clock cannot move between the limiter's decision and the
// return), and by which process.
type grant struct {
	at   time.Time
	proc int
}

type recorder struct {
	mu     sync.Mutex
	grants []grant
	errs   []error
}

func (r *recorder) add(g grant) {
	r.mu.Lock()
	r.grants = append(r.grants, g)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func newProc(t *testing.T, sm *sim, id int, prefix, name string, m *metrics.Metrics, limit ratelimit.Limit, burst int64, opts ...ratelimit.Option) *proc {
	t.Helper()
	c := etcdtest.NewCounter()
	cli, err := srv.NewClient(etcdtest.WithCounter(c))
	if err != nil {
		t.Fatal(err)
	}
	s, err := session.New(ctxT(t, 10*time.Second), cli, session.WithPrefix(prefix), session.WithTTL(3*time.Second), session.WithMetrics(m))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	l := ratelimit.New(s, name, limit, burst, append([]ratelimit.Option{ratelimit.WithClock(sm.clock)}, opts...)...)
	sm.add(l)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &proc{id: id, cli: cli, s: s, l: l, counter: c, ctx: ctx, cancel: cancel}
}

// era is one limit's span in simulated time and its cap.
type capEra struct {
	from, until time.Time // until zero: open
	cap         int64
}

// eras reads the limit changes from the stored state: each grid's start,
// end and cap.
func eras(t *testing.T, cli *clientv3.Client, key string) []capEra {
	t.Helper()
	resp, err := cli.Get(ctxT(t, 5*time.Second), key)
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("state key %s: %v", key, err)
	}
	var st struct {
		Grids []struct {
			T0        int64 `json:"t0"`
			End       int64 `json:"end"`
			PerPeriod int64 `json:"per_period"`
		} `json:"grids"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		t.Fatal(err)
	}
	var out []capEra
	for _, g := range st.Grids {
		e := capEra{from: time.Unix(0, g.T0), cap: g.PerPeriod}
		if g.End != 0 {
			e.until = time.Unix(0, g.End)
		}
		out = append(out, e)
	}
	return out
}

// checkCap checks every window [w, w+interval) of the granted events'
// timestamps against the largest cap of the eras it meets, and returns
// the fullest window and its cap.
func checkCap(t *testing.T, grants []grant, eras []capEra, interval time.Duration) (most int, capOf int64) {
	t.Helper()
	slices.SortFunc(grants, func(a, b grant) int { return a.at.Compare(b.at) })
	j := 0
	for i := range grants {
		w := grants[i].at
		for j < len(grants) && grants[j].at.Before(w.Add(interval)) {
			j++
		}
		var c int64
		for _, e := range eras {
			if e.from.Before(w.Add(interval)) && (e.until.IsZero() || e.until.After(w)) {
				c = max(c, e.cap)
			}
		}
		if int64(j-i) > c {
			t.Errorf("window [%v, +%v) holds %d granted events, over its cap %d", w.Sub(simStart), interval, j-i, c)
		}
		if j-i > most {
			most, capOf = j-i, c
		}
	}
	return most, capOf
}

// onOff is a process's bursty demand: intervals of wanting events as
// fast as they come, with pauses between, and always on within force.
type onOff [][2]time.Time

func newOnOff(r *rand.Rand, start, end time.Time, force [2]time.Time) onOff {
	var o onOff
	for t := start; t.Before(end); {
		on := t.Add(time.Duration(500+r.IntN(2500)) * time.Millisecond)
		o = append(o, [2]time.Time{t, on})
		t = on.Add(time.Duration(200+r.IntN(1300)) * time.Millisecond)
	}
	if !force[0].IsZero() {
		o = append(o, force)
		slices.SortFunc(o, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	}
	return o
}

// next returns whether t is in an interval on, and if not when the next
// one starts (zero: none).
func (o onOff) next(t time.Time) (bool, time.Time) {
	for _, iv := range o {
		if !t.Before(iv[0]) && t.Before(iv[1]) {
			return true, time.Time{}
		}
		if iv[0].After(t) {
			return false, iv[0]
		}
	}
	return false, time.Time{}
}

// demand runs a process's callers on the simulated clock: callers of a
// heavy process wait for events back to back while it is on; the light
// process asks for one event every 1.3 s or so and records how long it
// waited.
type demand struct {
	sm    *sim
	rec   *recorder
	end   time.Time
	mu    sync.Mutex
	waits []time.Duration // the light process's
}

func (d *demand) heavy(ctx context.Context, id int, o onOff, wait func(context.Context) error) {
	d.sm.clock.goTracked(func() {
		for ctx.Err() == nil {
			now := d.sm.clock.Now()
			if on, next := o.next(now); !on {
				if next.IsZero() || !next.Before(d.end) {
					next = d.end
				}
				if d.sm.clock.sleepUntil(ctx, next) != nil {
					return
				}
				continue
			}
			if err := wait(ctx); err != nil {
				if ctx.Err() == nil {
					d.rec.fail(fmt.Errorf("process %d: %w", id, err))
				}
				return
			}
			d.rec.add(grant{at: d.sm.clock.Now(), proc: id})
		}
	})
}

func (d *demand) light(ctx context.Context, id int, r *rand.Rand, start time.Time, wait func(context.Context) error) {
	var at []time.Time
	for t := start.Add(700 * time.Millisecond); t.Before(d.end.Add(-time.Second)); t = t.Add(time.Duration(1100+r.IntN(400)) * time.Millisecond) {
		at = append(at, t)
	}
	d.sm.clock.goTracked(func() {
		for _, t := range at {
			if d.sm.clock.sleepUntil(ctx, t) != nil {
				return
			}
			asked := d.sm.clock.Now()
			if err := wait(ctx); err != nil {
				if ctx.Err() == nil {
					d.rec.fail(fmt.Errorf("light process: %w", err))
				}
				return
			}
			now := d.sm.clock.Now()
			d.rec.add(grant{at: now, proc: id})
			d.mu.Lock()
			d.waits = append(d.waits, now.Sub(asked))
			d.mu.Unlock()
		}
	})
}

// perInterval counts the grants in each aligned interval [k, k+1)·iv of
// [from, to).
func perInterval(grants []grant, from, to time.Time, iv time.Duration) []int {
	out := make([]int, int(to.Sub(from)/iv))
	for _, g := range grants {
		if i := int(g.at.Sub(from) / iv); !g.at.Before(from) && i < len(out) {
			out[i]++
		}
	}
	return out
}

// The "Done when", on a real embedded etcd and a simulated clock
// (see simClock): 8 processes, each its own client and session; seven
// with bursty demand well above the limit (three callers each that want
// events back to back while on, off 0.2 to 1.5 s at a time), one light
// (an event every 1.1 to 1.5 s); 30 simulated seconds of a limit of 100
// per second with a burst of 10 (the default 10ms skew), SetLimit to 50
// at 10 s and back to 100 at 20 s, and one process killed at 15 s (its
// client closed under it, as a crash leaves it) while it holds a
// reservation. Every window of the interval, over the granted events'
// timestamps, holds at most limit + burst; the total is at least 95% of
// what the limits allow; every request of the light process is served
// within about a horizon. Then the naive limiter (one Txn per event) in
// the same test, on the same server and clock, for the Txns it costs.
func TestEightProcessesBurstyDemand(t *testing.T) {
	if testing.Short() {
		t.Skip("30 simulated seconds")
	}
	t.Parallel()
	sm := &sim{t: t, clock: newSimClock(simStart)}
	prefix, name := root(t), "partner-api"
	limit, burst := ratelimit.Per(100, time.Second), int64(10)
	r := rand.New(rand.NewPCG(22, 1))
	m := metrics.New()
	rec := &recorder{}
	end := simStart.Add(30 * time.Second)
	d := &demand{sm: sm, rec: rec, end: end}
	const killed = 5
	procs := make([]*proc, 8)
	for i := range procs {
		procs[i] = newProc(t, sm, i, prefix, name, m, limit, burst)
	}
	for i := 1; i < len(procs); i++ {
		var force [2]time.Time
		if i == killed {
			force = [2]time.Time{simStart.Add(13 * time.Second), simStart.Add(16 * time.Second)}
		}
		o := newOnOff(r, simStart, end, force)
		for range 3 {
			d.heavy(procs[i].ctx, i, o, procs[i].l.Wait)
		}
	}
	d.light(procs[0].ctx, 0, r, simStart, procs[0].l.Wait)
	key := prefix + "ratelimit/" + name + "/state"
	ctx := ctxT(t, 60*time.Second)

	wall := time.Now()
	sm.runUntil(simStart.Add(10 * time.Second))
	t.Logf("wall %v at 10s", time.Since(wall))
	if err := procs[1].l.SetLimit(ctx, ratelimit.Per(50, time.Second)); err != nil {
		t.Fatal(err)
	}
	down := eras(t, srv.Client(), key)
	sm.runUntil(simStart.Add(15 * time.Second))
	for ratelimit.Holdings(procs[killed].l) == 0 && sm.clock.Now().Before(simStart.Add(16*time.Second)) {
		sm.runUntil(sm.clock.Now().Add(10 * time.Millisecond))
	}
	held, killedAt := ratelimit.Holdings(procs[killed].l), sm.clock.Now()
	// A closed client's calls never reach the server (the etcd client
	// retries them locally): count the killed process's Txns up to now.
	killedTxns := procs[killed].counter.Get("Txn")
	if held == 0 {
		t.Fatal("the process to kill holds no permits")
	}
	procs[killed].cancel()
	procs[killed].cli.Close()
	sm.runUntil(simStart.Add(20 * time.Second))
	if err := procs[2].l.SetLimit(ctx, limit); err != nil {
		t.Fatal(err)
	}
	up := eras(t, srv.Client(), key)
	sm.runUntil(end)
	for _, p := range procs {
		p.cancel()
	}
	// Past the end, nobody wants anything: every process gives its stock
	// back and lets its reservation key go.
	sm.runUntil(end.Add(3 * time.Second))
	t.Logf("wall %v at the end; %d steps, %d polls", time.Since(wall), sm.clock.steps, sm.clock.polls)

	for _, err := range rec.errs {
		t.Error(err)
	}
	es := append(down[:len(down)-1], up...)
	most, capOf := checkCap(t, rec.grants, es, limit.Interval)

	// What the limits allow: 100/s until the first change takes effect,
	// 50/s until the second, 100/s to the end.
	s1, s2 := down[len(down)-1].from, up[len(up)-1].from
	allowed := 100*s1.Sub(simStart).Seconds() + 50*s2.Sub(s1).Seconds() + 100*end.Sub(s2).Seconds()
	var inRun int
	byProc := map[int]int{}
	for _, g := range rec.grants {
		if g.at.Before(end) {
			inRun++
			byProc[g.proc]++
		}
	}
	if float64(inRun) < 0.95*allowed {
		t.Errorf("granted %d events in 30 s, %.1f%% of the %.0f the limits allow", inRun, 100*float64(inRun)/allowed, allowed)
	}
	for _, g := range rec.grants {
		if g.proc == killed && g.at.After(killedAt) {
			t.Errorf("the killed process was granted an event at %v, after it was killed at %v", g.at.Sub(simStart), killedAt.Sub(simStart))
		}
	}
	slices.Sort(d.waits)
	if len(d.waits) < 20 || d.waits[len(d.waits)-1] > 1500*time.Millisecond {
		t.Errorf("light process: %d requests served, waits %v", len(d.waits), d.waits)
	}
	txns := killedTxns
	for _, p := range procs {
		if p.id != killed {
			txns += p.counter.Get("Txn")
		}
	}
	counts := perInterval(rec.grants, simStart, end, time.Second)
	t.Logf("limit 100/s burst 10, then 50/s from %v, 100/s from %v; process %d killed at %v holding %d permits",
		s1.Sub(simStart), s2.Sub(simStart), killed, killedAt.Sub(simStart), held)
	t.Logf("granted %d in 30 s: %.1f%% of the %.0f allowed; by process %v", inRun, 100*float64(inRun)/allowed, allowed, byProc)
	t.Logf("fullest window of 1 s: %d events, cap %d; per aligned second: %v", most, capOf, counts)
	t.Logf("light process waits: median %v, max %v (%d requests)", d.waits[len(d.waits)/2], d.waits[len(d.waits)-1], len(d.waits))
	t.Logf("coord: %d Txns for %d granted: %.1f Txns per 1000 granted (%.0f conflicts)", txns, len(rec.grants),
		1000*float64(txns)/float64(len(rec.grants)), gatherValue(t, m, "coord_ratelimit_txns_total", map[string]string{"result": "conflict"}))

	for _, op := range []string{"reserve", "return", "release"} {
		for _, res := range []string{"ok", "conflict", "error"} {
			if v := gatherValue(t, m, "coord_ratelimit_txns_total", map[string]string{"op": op, "result": res}); v > 0 {
				t.Logf("  txns %s %s: %.0f", op, res, v)
			}
		}
	}
	for _, ev := range []string{"reserved", "returned", "lapsed", "cancelled"} {
		t.Logf("  permits %s: %.0f", ev, gatherValue(t, m, "coord_ratelimit_permits_total", map[string]string{"event": ev}))
	}
	t.Logf("  reservations: %.0f", gatherValue(t, m, "coord_ratelimit_reservations_total", nil))
	if os.Getenv("RL_EPOCHS") != "" {
		ep := perInterval(rec.grants, simStart, simStart.Add(10*time.Second), 100*time.Millisecond)
		hist := map[int]int{}
		for _, n := range ep[10:] {
			hist[n]++
		}
		t.Logf("  epochs 1s-10s by events granted: %v", hist)
		t.Logf("  %v", ep)
	}
	// Nothing is left held: no reservation keys (the killed process's goes
	// with its lease), nothing reserved ahead.
	eventually(t, 10*time.Second, "every reservation key gone", func() bool { return keysUnder(t, prefix+"ratelimit/"+name+"/r/") == 0 })
	t.Logf("wall %v after keys gone", time.Since(wall))

	// The naive limiter, same demand, same server, a simulated clock of
	// its own: 1 simulated second (RL_NAIVE=5s for more; each costs
	// several seconds of real time, all conflicts).
	naiveFor := time.Second
	if v := os.Getenv("RL_NAIVE"); v != "" {
		var err error
		if naiveFor, err = time.ParseDuration(v); err != nil {
			t.Fatalf("RL_NAIVE=%q: %v", v, err)
		}
	}
	nsm := &sim{t: t, clock: newSimClock(end.Add(time.Hour))}
	nrec := &recorder{}
	nstart := nsm.clock.Now()
	nend := nstart.Add(naiveFor)
	nd := &demand{sm: nsm, rec: nrec, end: nend}
	var ncounters []*etcdtest.Counter
	nctx, ncancel := context.WithCancel(context.Background())
	defer ncancel()
	for i := range 8 {
		c := etcdtest.NewCounter()
		cli, err := srv.NewClient(etcdtest.WithCounter(c))
		if err != nil {
			t.Fatal(err)
		}
		ncounters = append(ncounters, c)
		n := bench.NewNaive(cli, prefix+"naive", limit, burst, nsm.clock.Now, nsm.clock.sleepUntil)
		if i == 0 {
			nd.light(nctx, 0, r, nstart, n.Wait)
			continue
		}
		o := newOnOff(r, nstart, nend, [2]time.Time{})
		for range 3 {
			nd.heavy(nctx, i, o, n.Wait)
		}
	}
	nsm.runUntil(nend)
	ncancel()
	nsm.settle()
	for _, err := range nrec.errs {
		t.Error(err)
	}
	var ntxns int64
	for _, c := range ncounters {
		ntxns += c.Get("Txn")
	}
	nmost, _ := checkCap(t, nrec.grants, []capEra{{from: nstart, cap: 110}}, limit.Interval)
	t.Logf("naive: %d Txns for %d granted in %v: %.1f Txns per 1000 granted; fullest window %d",
		ntxns, len(nrec.grants), naiveFor, 1000*float64(ntxns)/float64(len(nrec.grants)), nmost)
	if len(nrec.grants) == 0 || ntxns < int64(len(nrec.grants)) {
		t.Errorf("naive: %d Txns for %d granted, want at least one per event", ntxns, len(nrec.grants))
	}
}
