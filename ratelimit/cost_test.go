package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/metrics"
	"github.com/coord-go/coord/ratelimit"
)

// costRun is what one load cost.
type costRun struct {
	granted  int
	txns     int64 // the busy processes' Txns
	idleTxns int64 // the idle limiters' Txns once they went idle
	resv     float64
	state    int // bytes of the state key's value at the end
}

// runCost runs procs processes with callers callers each waiting back to
// back for dur of simulated time, next to idle limiters that were used
// once at the start and then not at all, and counts what it cost.
func runCost(t *testing.T, procs, callers, idle int, dur time.Duration) costRun {
	t.Helper()
	sm := &sim{t: t, clock: newSimClock(simStart)}
	prefix, name := root(t)+fmt.Sprintf("%d-%d-%d/", procs, callers, idle), "api"
	limit, burst := ratelimit.Per(100, time.Second), int64(10)
	m := metrics.New()
	rec := &recorder{}
	end := simStart.Add(dur)
	d := &demand{sm: sm, rec: rec, end: end}
	ps := make([]*proc, procs)
	for i := range ps {
		ps[i] = newProc(t, sm, i, prefix, name, m, limit, burst)
	}
	// The idle limiters share one process (one client, one session): each
	// counts for the fair share only while it holds permits.
	ip := newProc(t, sm, procs, prefix, name, metrics.New(), limit, burst)
	var idlers []*ratelimit.Limiter
	for range idle {
		l := ratelimit.New(ip.s, name, limit, burst, ratelimit.WithClock(sm.clock))
		sm.add(l)
		idlers = append(idlers, l)
		sm.clock.goTracked(func() {
			if err := l.Wait(ip.ctx); err != nil {
				rec.fail(err)
			}
		})
	}
	for _, p := range ps {
		for range callers {
			d.heavy(p.ctx, p.id, onOff{{simStart, end}}, p.l.Wait)
		}
	}
	sm.runUntil(simStart.Add(dur / 4))
	// The idle limiters wait their turn for their one event (their share
	// is small among so many), then give back what they hold: from when
	// every one of them stopped following the limiter, they cost nothing.
	busy := func() bool {
		for _, l := range idlers {
			if active, _, _, _ := ratelimit.SyncState(l); active {
				return true
			}
		}
		return false
	}
	for busy() && sm.clock.Now().Before(simStart.Add(dur/2)) {
		sm.runUntil(sm.clock.Now().Add(50 * time.Millisecond))
	}
	if busy() {
		t.Fatalf("idle limiters still follow the limiter %v after their one event", dur/2)
	}
	idleFrom := ip.counter.Get("Txn")
	var busyFrom int64
	for _, p := range ps {
		busyFrom += p.counter.Get("Txn")
	}
	from := len(rec.grants)
	sm.runUntil(end)
	var out costRun
	for _, p := range ps {
		out.txns += p.counter.Get("Txn")
		p.cancel()
	}
	out.txns -= busyFrom
	out.idleTxns = ip.counter.Get("Txn") - idleFrom
	out.granted = len(rec.grants) - from
	out.resv = gatherValue(t, m, "coord_ratelimit_reservations_total", nil)
	for _, err := range rec.errs {
		t.Error(err)
	}
	resp, err := srv.Client().Get(ctxT(t, 5*time.Second), prefix+"ratelimit/"+name+"/state")
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("state key: %v", err)
	}
	out.state = len(resp.Kvs[0].Value)
	ip.cancel()
	sm.runUntil(end.Add(time.Second))
	return out
}

func (c costRun) perThousand() float64 { return 1000 * float64(c.txns) / float64(max(1, c.granted)) }

// The cost of a grant does not grow with the line: a process's callers
// share its reservations, so 64 callers cost no more Txns per event than
// 4; limiters that are not used cost nothing at all, however many there
// are, and do not shrink the busy processes' shares; the state key does
// not grow with the processes.
func TestCostFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("simulated load")
	}
	t.Parallel()
	const dur = 6 * time.Second
	few := runCost(t, 1, 4, 0, dur)
	many := runCost(t, 1, 64, 0, dur)
	t.Logf("1 process, 4 callers: %d granted, %d Txns (%.1f per 1000); 64 callers: %d granted, %d Txns (%.1f per 1000)",
		few.granted, few.txns, few.perThousand(), many.granted, many.txns, many.perThousand())
	if many.perThousand() > 1.5*few.perThousand()+10 {
		t.Errorf("64 callers cost %.1f Txns per 1000 granted, 4 callers %.1f: the cost grows with the callers", many.perThousand(), few.perThousand())
	}
	quiet := runCost(t, 2, 4, 0, dur)
	crowd := runCost(t, 2, 4, 40, dur)
	t.Logf("2 busy processes: %.1f Txns per 1000 granted, state %d bytes; with 40 idle limiters: %.1f, state %d bytes, %d Txns of the idle ones",
		quiet.perThousand(), quiet.state, crowd.perThousand(), crowd.state, crowd.idleTxns)
	if crowd.idleTxns != 0 {
		t.Errorf("40 idle limiters made %d Txns once idle, want none", crowd.idleTxns)
	}
	if crowd.perThousand() > 1.5*quiet.perThousand()+10 {
		t.Errorf("idle limiters raised the busy processes' cost from %.1f to %.1f Txns per 1000 granted", quiet.perThousand(), crowd.perThousand())
	}
	wide := runCost(t, 8, 4, 0, dur)
	t.Logf("8 busy processes: %.1f Txns per 1000 granted (%.0f reservations), state %d bytes", wide.perThousand(), wide.resv, wide.state)
	if wide.state > 2*quiet.state+64 {
		t.Errorf("the state key grew from %d bytes with 2 processes to %d with 8", quiet.state, wide.state)
	}
	for _, c := range []costRun{few, many, quiet, crowd, wide} {
		if float64(c.granted) < 0.9*100*0.75*dur.Seconds() {
			t.Errorf("only %d granted in the last %v", c.granted, dur*3/4)
		}
	}
}
