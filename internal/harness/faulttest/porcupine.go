package faulttest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The outside checker: the lock, election and queue histories the suite
// records are also handed to Porcupine (a linearizability checker nobody
// here wrote) against two small sequential models, so a verdict of
// "no violation" does not rest on our own checks alone.
//
// The fenced register (lock, write side of the RWMutex, election), one
// partition per primitive:
//
//   - acquire returns token T: legal only if T is above every token
//     granted before it (tokens strictly increase);
//   - a fenced write with token T that etcd accepted: legal only if T is
//     the latest token granted (no successor was granted before the write
//     took effect), which is "at most one holder at a time" as seen by the
//     data the holders guard;
//   - a rejected fenced write is always legal: a holder may lose its key
//     (its lease expired, it was revoked) before anyone is granted, and
//     refusing a write is never unsafe.
//
// The at-least-once queue, one partition per message, with the times the
// clients saw and the revisions etcd committed at:
//
//   - enqueue (the first attempt's call until the one that succeeded; an
//     ambiguous last attempt makes it "maybe");
//   - deliver(T): a handler started under claim T; legal only while the
//     message is enqueued and not acked, and T above every earlier claim;
//   - handled(T, ok): that handler returned (ok: nil, an Ack is due);
//   - ack(T): etcd deleted the payload, releasing claim T; legal only if
//     the message was enqueued, not acked before, T is the latest claim
//     and its handler returned ok (acks are fenced by the claim: no ack of
//     a message not delivered, none twice, none by a claim given back);
//   - end(present): after the drain, whether the payload is still stored;
//     legal only if present == (enqueued and not acked).

// porcupineTimeout bounds each model's check; a check that runs out
// reports Unknown, which is logged and is not a violation.
const porcupineTimeout = 20 * time.Second

// Verdicts is what Porcupine said about one scenario's histories.
type Verdicts struct {
	Register porcupine.CheckResult // "" when there was nothing to check
	Queue    porcupine.CheckResult
	RegOps   int
	QueueOps int
}

func (v Verdicts) String() string {
	s := func(r porcupine.CheckResult) string {
		if r == "" {
			return "-"
		}
		return string(r)
	}
	return fmt.Sprintf("register=%s(%d ops) queue=%s(%d ops)", s(v.Register), v.RegOps, s(v.Queue), v.QueueOps)
}

// Illegal reports whether either model was found violated.
func (v Verdicts) Illegal() bool {
	return v.Register == porcupine.Illegal || v.Queue == porcupine.Illegal
}

// Register model.

type regInput struct {
	key   string // kind/name: the partition
	op    string // "acquire", "write"
	token int64
	ok    bool // write: etcd accepted it
}

// partitionBy splits a history into one per key (in key order), each
// checked on its own: operations on different keys never constrain each
// other in either model.
func partitionBy(key func(porcupine.Operation) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range h {
			k := key(o)
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], o)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	}
}

var registerModel = porcupine.Model{
	Partition: partitionBy(func(o porcupine.Operation) string { return o.Input.(regInput).key }),
	Init:      func() any { return int64(0) }, // the latest token granted
	Step: func(state, input, output any) (bool, any) {
		latest, in := state.(int64), input.(regInput)
		switch in.op {
		case "acquire":
			return in.token > latest, in.token
		case "write":
			if !in.ok {
				return true, latest
			}
			return in.token == latest, latest
		}
		return false, latest
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		return fmt.Sprintf("%s %s(%d) ok=%v", in.key, in.op, in.token, in.ok)
	},
}

// registerOps turns the history's exclusive holds into register
// operations.
func registerOps(ops []Op, kinds map[string]bool) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		if !kinds[o.Kind] {
			continue
		}
		var in regInput
		switch {
		case o.Op == "acquire" && o.Outcome == "ok":
			in = regInput{op: "acquire", token: o.Token}
		case o.Op == "write" && (o.Outcome == "ok" || o.Outcome == "rejected"):
			in = regInput{op: "write", token: o.Token, ok: o.Outcome == "ok"}
		default:
			continue // a failed call may or may not have taken effect; the model needs neither
		}
		in.key = o.Kind + "/" + o.Name
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: in, Call: o.Call.UnixNano(), Return: o.Return.UnixNano()})
	}
	return out
}

// Queue model.

type qInput struct {
	id    string
	op    string // "enqueue", "enqueue?", "deliver", "handled", "ack", "end"
	token int64
	ok    bool // handled: the handler returned nil; end: the payload is present
}

type qState struct {
	enq     int8  // 0 not enqueued, 1 enqueued, 2 maybe (an ambiguous Enqueue)
	claim   int64 // latest claim
	okClaim int64 // the claim whose handler returned nil, if it is the latest
	acked   bool
}

var queueModel = porcupine.Model{
	Partition: partitionBy(func(o porcupine.Operation) string { return o.Input.(qInput).id }),
	Init:      func() any { return qState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in := state.(qState), input.(qInput)
		switch in.op {
		case "enqueue":
			if s.enq == 1 {
				return false, s
			}
			s.enq = 1
			return true, s
		case "enqueue?":
			if s.enq == 0 {
				s.enq = 2
			}
			return true, s
		case "deliver":
			if s.enq == 0 || s.acked || in.token <= s.claim {
				return false, s
			}
			s.enq, s.claim, s.okClaim = 1, in.token, 0
			return true, s
		case "handled":
			if in.ok && in.token == s.claim {
				s.okClaim = in.token
			}
			return true, s
		case "ack":
			if s.enq == 0 || s.acked || in.token != s.claim || s.okClaim != in.token {
				return false, s
			}
			s.enq, s.acked = 1, true
			return true, s
		case "end":
			if s.enq == 2 {
				return true, s // it may never have landed, or landed and waits
			}
			return in.ok == (s.enq == 1 && !s.acked), s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in := input.(qInput)
		return fmt.Sprintf("%s %s(%d) ok=%v", in.id, in.op, in.token, in.ok)
	},
}

// enqueueRecord is one payload's Enqueue: from its first attempt's call to
// the return of its last attempt, and whether one succeeded.
type enqueueRecord struct {
	call, ret time.Time
	sure      bool
}

// queueOps builds the queue model's operations from the producer's
// record, the handlers' runs and etcd's history. present tells whether a
// message's payload is still stored after the drain.
func (r *queueRun) queueOps(e *Env, present map[string]bool, end time.Time) []porcupine.Operation {
	sp, _ := keys.New(e.Root, keys.KindQueue, r.name)
	claimPre, payPre := sp.Part("c"), sp.Part("v")
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []porcupine.Operation
	add := func(client int, in qInput, call, ret time.Time) {
		out = append(out, porcupine.Operation{ClientId: max(client, 0), Input: in, Call: call.UnixNano(), Return: ret.UnixNano()})
	}
	idsOf := map[string][]string{} // payload -> message ids etcd stored it under
	handlerEnd := map[string]time.Time{}
	deletedClaims := map[int64][]Event{}
	type ack struct {
		id  string
		ev  Event
		tok int64
	}
	var acks []ack
	for _, ev := range e.Log.Events() {
		switch {
		case strings.HasPrefix(ev.Key, claimPre) && ev.Delete:
			deletedClaims[ev.Rev] = append(deletedClaims[ev.Rev], ev)
		case strings.HasPrefix(ev.Key, payPre):
			id := strings.TrimPrefix(ev.Key, payPre)
			if ev.Delete {
				acks = append(acks, ack{id: id, ev: ev})
			} else if !ev.Delete {
				idsOf[ev.Value] = append(idsOf[ev.Value], id)
			}
		}
	}
	for _, h := range r.runs {
		add(h.client, qInput{id: h.id, op: "deliver", token: h.token}, h.start, h.start)
		add(h.client, qInput{id: h.id, op: "handled", token: h.token, ok: h.ok}, h.end, h.end)
		handlerEnd[fmt.Sprintf("%s/%d", h.id, h.token)] = h.end
	}
	for _, a := range acks {
		for _, d := range deletedClaims[a.ev.Rev] {
			if strings.HasPrefix(d.Key, claimPre+a.id+"/") {
				a.tok = d.CreateRev
			}
		}
		call := a.ev.Seen
		if t, ok := handlerEnd[fmt.Sprintf("%s/%d", a.id, a.tok)]; ok && t.Before(call) {
			call = t
		}
		add(-1, qInput{id: a.id, op: "ack", token: a.tok}, call, a.ev.Seen)
	}
	payloads := make([]string, 0, len(r.enqueues))
	for p := range r.enqueues {
		payloads = append(payloads, p)
	}
	sort.Strings(payloads)
	for _, p := range payloads {
		rec := r.enqueues[p]
		ids := idsOf[p]
		if len(ids) == 0 {
			ids = []string{"payload:" + p} // never stored: only its enqueue and the end
		}
		for _, id := range ids {
			op := "enqueue"
			if !rec.sure || len(idsOf[p]) > 1 {
				op = "enqueue?" // an ambiguous attempt; or stored twice by a documented retry
			}
			add(0, qInput{id: id, op: op}, rec.call, rec.ret)
			add(0, qInput{id: id, op: "end", ok: present[id]}, end, end)
		}
	}
	return out
}

// checkPorcupine runs both models over a scenario's histories and records
// an Illegal verdict as a violation.
func checkPorcupine(e *Env, qr *queueRun) Verdicts {
	var v Verdicts
	reg := registerOps(e.Hist.Ops(), map[string]bool{"lock": true, "rwlock-w": true, "elect": true, "multi-lock": true, "multi-elect": true})
	if len(reg) > 0 {
		v.RegOps = len(reg)
		v.Register = porcupine.CheckOperationsTimeout(registerModel, reg, porcupineTimeout)
		if v.Register == porcupine.Illegal {
			e.Stats.Violation("porcupine: the lock and election histories are not linearizable as a fenced register")
		}
	}
	if qr != nil && e.Log.Complete() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sp, _ := keys.New(e.Root, keys.KindQueue, qr.name)
		present := map[string]bool{}
		resp, err := e.Admin.Get(ctx, sp.Part("v"), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err == nil {
			for _, kv := range resp.Kvs {
				present[strings.TrimPrefix(string(kv.Key), sp.Part("v"))] = true
			}
			q := qr.queueOps(e, present, time.Now())
			v.QueueOps = len(q)
			v.Queue = porcupine.CheckOperationsTimeout(queueModel, q, porcupineTimeout)
			if v.Queue == porcupine.Illegal {
				e.Stats.Violation("porcupine: the queue history is not linearizable as an at-least-once queue with fenced acks")
			}
		}
	}
	return v
}

func verdictWord(r porcupine.CheckResult) string {
	if r == "" {
		return "-"
	}
	return string(r)
}
