package faulttest

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The whole-cluster crash: every member is killed at once (SIGKILL of
// every etcd process, or a hard stop of every embedded member) in the
// middle of the workloads, and the cluster is restarted from its data
// directories. Half the processes have sessions whose TTL outlives the
// outage, half have sessions that do not. What must hold, beside every
// check of the suite (fenced writes, one holder in etcd's order, loss
// before successor, the queue's history, Porcupine):
//
//   - nothing acknowledged is lost: every Enqueue that returned success
//     is stored and delivered (queue checks), and every Ack that returned
//     success stays acked: the message is never handled again after it
//     and is not stored at the end;
//   - every fencing token granted after the restart is above every token
//     granted before the crash (the revision never goes back);
//   - a lock, permit or leadership that was held when the cluster died is,
//     once the cluster is back, either still held (its key is still
//     there) or reported lost (Done closed) within the session's TTL of
//     the restart, or let go by its holder: never silently gone.

// crashTTLs are the session TTLs of the crash scenario's processes: the
// first two lose their sessions in the outage, the others outlive it.
var crashTTLs = []time.Duration{ttl, ttl, 15 * time.Second, 15 * time.Second}

// crashNemesis crashes the whole cluster rounds times, each after a spell
// of workload, and restarts it.
func crashNemesis(rounds int) func(ctx context.Context, e *Env, w *world) {
	return func(ctx context.Context, e *Env, w *world) {
		for i := 0; i < rounds && ctx.Err() == nil; i++ {
			pause(ctx, time.Duration(1500+e.Rand(1500))*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
			call := time.Now()
			e.Cluster.KillAll()
			e.Stats.Fault("crash-all-members")
			killed := time.Now()
			pause(context.Background(), time.Duration(300+e.Rand(700))*time.Millisecond)
			if err := e.Cluster.RestartAll(); err != nil {
				e.Stats.Violation("restart of the whole cluster: %v", err)
				return
			}
			e.Hist.Add(Op{Client: -1, Kind: "nemesis", Op: "crash-all", Call: call, Return: time.Now(), Detail: killed.Format(time.RFC3339Nano)})
		}
	}
}

// claimLoop is a consumer that claims and acks one message at a time with
// Claim and Ack, so that the Acks that returned success are known.
func (r *queueRun) claimLoop(ctx context.Context, e *Env, c *Client) {
	q := r.q(e, c.Cli)
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := q.Claim(cctx, s)
		cancel()
		if err != nil {
			pause(ctx, 20*time.Millisecond)
			continue
		}
		h := handling{client: c.ID, id: m.ID, payload: string(m.Payload), token: m.Token(), lease: int64(s.Lease()),
			attempt: m.Attempt, start: time.Now(), kind: "explicit"}
		c.Stall(e)
		pause(ctx, time.Duration(e.Rand(5))*time.Millisecond)
		h.end, h.ok = time.Now(), true
		r.mu.Lock()
		r.runs = append(r.runs, h)
		r.mu.Unlock()
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		call := time.Now()
		err = m.Ack(actx)
		cancel()
		op := Op{Client: c.ID, Kind: "queue", Name: r.name, Op: "ack", Call: call, Return: time.Now(), Token: h.token, Outcome: "ok", Detail: m.ID}
		if err != nil {
			op.Outcome = "fail"
		}
		e.Hist.Add(op)
	}
}

// CrashReport is what a whole-cluster crash run did.
type CrashReport struct {
	Crashes                     int
	Ops                         int
	Enqueued, Delivered, Lost   int // messages whose Enqueue succeeded; of them, handled; neither stored nor acked
	Acked, AckedRedelivered     int // Acks that returned success; of them, messages handled again after
	HeldAtCrash, Kept, Reported int // holds open at a crash; of them, still held after; reported lost
	Released                    int // of them, let go by their holder after the restart
	TokensBefore, TokensAfter   int64
}

// grant is a fencing token handed out, with when it was asked for and
// when it returned.
type grant struct {
	t         int64
	call, ret time.Time
	what      string
}

// checkCrash checks what the whole-cluster crash promises (see above)
// and returns its numbers.
func checkCrash(e *Env, qr *queueRun) CrashReport {
	ops := e.Hist.Ops()
	var rep CrashReport
	var crashes []Op
	for _, o := range ops {
		if o.Kind == "nemesis" && o.Op == "crash-all" {
			crashes = append(crashes, o)
		}
	}
	rep.Crashes = len(crashes)
	rep.Ops = len(ops)
	var tokens []grant
	for _, o := range ops {
		if o.Op == "acquire" && o.Outcome == "ok" && o.Token > 0 {
			tokens = append(tokens, grant{o.Token, o.Call, o.Return, o.Kind + "/" + o.Name})
		}
	}
	qr.mu.Lock()
	for _, h := range qr.runs {
		if h.client >= 0 {
			tokens = append(tokens, grant{h.token, h.start, h.start, "queue claim"})
		}
	}
	qr.mu.Unlock()
	for _, cr := range crashes {
		// Tokens: every grant that returned before the crash is below
		// every grant asked for after the restart.
		var before, after int64
		var afterWhat string
		for _, tk := range tokens {
			if tk.ret.Before(cr.Call) {
				before = max(before, tk.t)
			}
			if tk.call.After(cr.Return) && (after == 0 || tk.t < after) {
				after, afterWhat = tk.t, tk.what
			}
		}
		if after != 0 && after <= before {
			e.Stats.Violation("crash: %s was granted token %d after the restart, not above token %d granted before the crash", afterWhat, after, before)
		}
		rep.TokensBefore, rep.TokensAfter = before, after

		// Holds open at the crash: still held, reported lost, or let go.
		checkpoint := cr.Return.Add(ttl + 2*time.Second)
		for _, a := range ops {
			if a.Op != "acquire" || a.Outcome != "ok" || !a.Return.Before(cr.Call) || a.Kind == "nemesis" {
				continue
			}
			var end *Op
			for i, o := range ops {
				if o.Client == a.Client && o.Kind == a.Kind && o.Name == a.Name && o.Token == a.Token && (o.Op == "lost" || o.Op == "release") {
					if end == nil || o.Call.Before(end.Call) {
						end = &ops[i]
					}
				}
			}
			if end != nil && end.Call.Before(cr.Call) {
				continue // over before the crash
			}
			rep.HeldAtCrash++
			seen, _ := e.Log.DeletedAt(a.Token)
			switch {
			case end != nil && end.Op == "lost" && end.Return.Before(checkpoint):
				rep.Reported++
			case end != nil && end.Op == "release" && (seen.IsZero() || !seen.Before(end.Call)):
				rep.Kept++ // its key was there until its holder let it go
				rep.Released++
			case end != nil && end.Op == "release" && end.Call.Before(checkpoint):
				rep.Released++ // let go (the key had gone with the session) before it could matter
			case seen.IsZero() || seen.After(checkpoint):
				rep.Kept++
			default:
				e.Stats.Violation("crash: client %d's %s/%s token %d was held at the crash; its key was gone at %s and the holder neither reported the loss nor let go by %s",
					a.Client, a.Kind, a.Name, a.Token, seen.Format("15:04:05.000"), checkpoint.Format("15:04:05.000"))
			}
		}
	}

	// The queue's numbers, and the Acks that returned success.
	qr.mu.Lock()
	defer qr.mu.Unlock()
	delivered := map[string]bool{}
	for _, h := range qr.runs {
		if h.ok {
			delivered[h.payload] = true
		}
	}
	for p := range qr.sure {
		rep.Enqueued++
		if delivered[p] {
			rep.Delivered++
		} else {
			rep.Lost++
			e.Stats.Violation("crash: the Enqueue of %s returned success, and no handler ever got it", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sp, _ := keys.New(e.Root, keys.KindQueue, qr.name)
	present := map[string]bool{}
	if resp, err := e.Admin.Get(ctx, sp.Part("v"), clientv3.WithPrefix(), clientv3.WithKeysOnly()); err == nil {
		for _, kv := range resp.Kvs {
			present[strings.TrimPrefix(string(kv.Key), sp.Part("v"))] = true
		}
	}
	var again []string
	for _, o := range ops {
		if o.Kind != "queue" || o.Op != "ack" || o.Outcome != "ok" {
			continue
		}
		rep.Acked++
		id := o.Detail
		if present[id] {
			e.Stats.Violation("crash: message %s's Ack returned success at %s, and the message is stored at the end", id, o.Return.Format("15:04:05.000"))
		}
		for _, h := range qr.runs {
			if h.id == id && h.start.After(o.Return) {
				again = append(again, id)
				e.Stats.Violation("crash: message %s's Ack returned success at %s, and it was handled again at %s (claim %d)",
					id, o.Return.Format("15:04:05.000"), h.start.Format("15:04:05.000"), h.token)
				break
			}
		}
	}
	sort.Strings(again)
	rep.AckedRedelivered = len(again)
	return rep
}
