package faulttest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/schedule"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// scheduleRun is the schedule workload: every process runs a replica of
// one schedule (every 500 ms, runs allowed to overlap, crashed runs re-run once elsewhere) on its
// shared session; runs stall where the nemesis pauses processes, now and
// then crash their process, and write a result fenced by their IsOwner.
type scheduleRun struct {
	name string
	mu   sync.Mutex
	runs int
	// written are the fenced writes etcd accepted: result key -> token.
	written map[string]int64
}

func newScheduleRun(name string) *scheduleRun {
	return &scheduleRun{name: name, written: map[string]int64{}}
}

func (r *scheduleRun) replica(ctx context.Context, e *Env, c *Client) {
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		sch := schedule.New(c.Cli, r.name, schedule.Every(500*time.Millisecond), schedule.WithPrefix(e.Root),
			schedule.WithCrash(schedule.CrashRerun), schedule.WithOverlap(schedule.OverlapAllow), schedule.WithReplica(fmt.Sprintf("c%d", c.ID)))
		crash := false
		rctx, stop := context.WithCancel(ctx)
		sch.Run(rctx, s, func(ctx context.Context, t schedule.Tick) error {
			call := time.Now()
			e.Hist.Add(Op{Client: c.ID, Kind: "schedule", Name: r.name, Op: "start", Call: call, Return: call, Token: t.Token,
				Detail: fmt.Sprintf("seq %d attempt %d tick %s", t.Seq, t.Attempt, t.Time.Format("15:04:05.000"))})
			c.Stall(e)
			if e.Rand(30) == 0 {
				crash = true
				stop() // the process dies mid-run: its session goes below
				return nil
			}
			key := fmt.Sprintf("%ssched-out/%d", e.Root, t.Token)
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := c.Cli.Txn(wctx).If(t.IsOwner()).Then(clientv3.OpPut(key, strconv.FormatInt(t.Seq, 10))).Commit()
			cancel()
			op := Op{Client: c.ID, Kind: "schedule", Name: r.name, Op: "write", Call: call, Return: time.Now(), Token: t.Token, Outcome: "ok"}
			switch {
			case err != nil:
				op.Outcome = "fail"
			case !resp.Succeeded:
				op.Outcome = "rejected"
			default:
				op.Rev = resp.Header.Revision
				r.mu.Lock()
				r.written[key] = t.Token
				r.mu.Unlock()
			}
			e.Hist.Add(op)
			r.mu.Lock()
			r.runs++
			r.mu.Unlock()
			return err
		})
		stop()
		if crash {
			c.Crash(s)
		}
		pause(ctx, 20*time.Millisecond)
	}
}

// check replays etcd's history of the schedule's run keys. A run key is
// a run started, on its runner's lease: "no tick started twice by live
// sessions" is that no two run keys of one tick ever exist at once (a
// re-run's key is created only after the crashed run's key is gone with
// its lease), that a tick is one seq and runs at most twice, and that
// every fenced result etcd accepted was written while its run's key was
// there.
func (r *scheduleRun) check(e *Env) {
	if !e.Log.Complete() {
		e.Stats.Figure("schedule check skipped: history incomplete", 0)
		return
	}
	sp, _ := keys.New(e.Root, keys.KindSchedule, r.name)
	pre := sp.Part("r")
	type attempt struct {
		key            string
		created, ended int64
	}
	live := map[string]map[string]bool{} // tick -> live run keys
	tickOf := map[string]string{}        // run key -> tick
	seqOf := map[string]string{}         // tick -> seq
	attempts := map[string]int{}         // tick -> run keys ever
	alive := map[int64]attempt{}         // create revision -> the run
	for _, ev := range e.Log.Events() {
		if strings.HasPrefix(ev.Key, e.Root+"sched-out/") && !ev.Delete {
			token, _ := strconv.ParseInt(strings.TrimPrefix(ev.Key, e.Root+"sched-out/"), 10, 64)
			if a, ok := alive[token]; !ok || a.ended != 0 {
				e.Stats.Violation("schedule: a fenced result with token %d was accepted at rev %d while its run key was gone", token, ev.Rev)
			}
			continue
		}
		if !strings.HasPrefix(ev.Key, pre) {
			continue
		}
		if ev.Delete {
			if a, ok := alive[ev.CreateRev]; ok {
				a.ended = ev.Rev
				alive[ev.CreateRev] = a
			}
			delete(live[tickOf[ev.Key]], ev.Key)
			continue
		}
		rec, err := keys.DecodeRecord([]byte(ev.Value))
		if err != nil {
			e.Stats.Violation("schedule: run key %s holds no record: %v", ev.Key, err)
			continue
		}
		tick, seq := rec.Meta["tick"], rec.Meta["seq"]
		if s, ok := seqOf[tick]; ok && s != seq {
			e.Stats.Violation("schedule: tick %s started as seq %s and as seq %s", tick, s, seq)
		}
		seqOf[tick] = seq
		tickOf[ev.Key] = tick
		alive[ev.CreateRev] = attempt{key: ev.Key, created: ev.CreateRev}
		if live[tick] == nil {
			live[tick] = map[string]bool{}
		}
		live[tick][ev.Key] = true
		attempts[tick]++
		if n := len(live[tick]); n > 1 {
			e.Stats.Violation("schedule: tick %s started twice by live sessions: %d run keys at rev %d", tick, n, ev.Rev)
		}
		if attempts[tick] > 2 {
			e.Stats.Violation("schedule: tick %s started %d times (a crashed run is re-run once)", tick, attempts[tick])
		}
	}
	if st, err := schedule.New(e.Admin, r.name, schedule.Every(time.Second), schedule.WithPrefix(e.Root)).Status(context.Background()); err == nil {
		e.Stats.mu.Lock()
		for reason, n := range st.Skipped {
			e.Stats.Faults["schedule-skipped-"+reason] = int(n)
		}
		e.Stats.mu.Unlock()
	}
	reruns := 0
	for _, n := range attempts {
		reruns += n - 1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Stats.mu.Lock()
	e.Stats.Faults["schedule-ticks"] = len(attempts)
	e.Stats.Faults["schedule-reruns"] = reruns
	e.Stats.Faults["schedule-fenced-writes"] = len(r.written)
	e.Stats.mu.Unlock()
}
