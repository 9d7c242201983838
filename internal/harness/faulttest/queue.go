package faulttest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The queue workload's consumers: one Consume pool per process, on the
// process's shared session, claiming and acking in batches, so that
// ClaimN and the batched AckAll run under every fault.
const (
	queueWorkers = 3
	queueBatch   = 4
	// queueClaimTimeout bounds a handler's claim; a few handlers run past
	// it on purpose, so that timed-out claims are redelivered under faults.
	queueClaimTimeout = 600 * time.Millisecond
	// queueDrain is longer than the longest handler (a pause past the TTL),
	// so a drain never cuts a handler off.
	queueDrain = 5 * time.Second
)

// handling is one run of a handler: the claim it ran under (its token and
// its session's lease), when it ran, and how it ended.
type handling struct {
	client   int
	id       string
	payload  string
	token    int64 // the claim key's create revision
	lease    int64
	attempt  int
	start    time.Time
	end      time.Time // when the handler returned (the broken variant: when it acked)
	ok       bool      // it returned nil, asking for an Ack
	kind     string    // what the handler did: ok, fail, panic, slow, crash (drain: the drain's claims)
	timedOut bool      // its ctx was cancelled by the claim timeout
}

// believedUntil is when the handler stopped relying on its claim: when it
// returned, or when its claim timeout passed (the claim was given back
// then, and its ctx said so).
func (h handling) believedUntil() time.Time {
	if h.timedOut {
		if t := h.start.Add(queueClaimTimeout); t.Before(h.end) {
			return t
		}
	}
	return h.end
}

// queueRun is the queue workload's shared record: what was enqueued, and
// every handler run. Whether a message was acked is judged from etcd's
// history (the Txn that deleted its in-flight entry and its payload), not
// from handlers: in batch mode the Ack is sent later, by Consume's acker.
type queueRun struct {
	name string
	// broken makes handlers "ack" with an unfenced Txn after they are done,
	// as an acker that skipped the claim check would: the suite must catch it.
	broken bool

	mu      sync.Mutex
	sure    map[string]bool // payloads whose Enqueue succeeded
	maybe   map[string]bool // payloads whose last Enqueue attempt was ambiguous
	retried map[string]bool // payloads with any ambiguous Enqueue attempt
	runs    []handling      // every handler run, and the drain's claims
	// enqueues: every payload's Enqueue, for the outside checker.
	enqueues map[string]enqueueRecord
	batches  int // EnqueueBatch calls that succeeded
}

func newQueueRun(name string) *queueRun {
	return &queueRun{name: name, retried: map[string]bool{}, sure: map[string]bool{}, maybe: map[string]bool{},
		enqueues: map[string]enqueueRecord{}}
}

func (r *queueRun) q(e *Env, cli *clientv3.Client) *queue.Queue {
	return queue.New(cli, r.name, queue.WithPrefix(e.Root), queue.WithMaxAttempts(1000),
		queue.WithBackoff(queue.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.2}))
}

// produce enqueues numbered payloads, one at a time or in batches of 2 to
// 8 (EnqueueBatch, all or nothing). A retried Enqueue carries the same
// idempotency keys, so an ambiguous failure never makes two messages, and
// a payload counts as enqueued once any attempt succeeded. A retried
// batch refused as a duplicate tells that an earlier attempt landed, with
// every message of the batch.
func (r *queueRun) produce(ctx context.Context, e *Env, c *Client) {
	q := r.q(e, c.Cli)
	for i := 0; ctx.Err() == nil; {
		n := 1
		if e.Rand(2) == 0 {
			n = 2 + e.Rand(7)
		}
		payloads := make([]string, n)
		entries := make([]queue.Entry, n)
		for k := range payloads {
			payloads[k] = fmt.Sprintf("c%d-%d", c.ID, i+k)
			entries[k] = queue.Entry{Payload: []byte(payloads[k]), Options: []queue.EnqueueOption{queue.WithIdempotencyKey(payloads[k])}}
		}
		i += n
		first := time.Now()
		for ctx.Err() == nil {
			ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var ids []string
			var err error
			if n == 1 {
				var id string
				id, err = q.Enqueue(ectx, entries[0].Payload, entries[0].Options...)
				ids = []string{id}
			} else {
				ids, err = q.EnqueueBatch(ectx, entries)
			}
			cancel()
			ret := time.Now()
			r.mu.Lock()
			landed := err == nil || (errors.Is(err, queue.ErrDuplicate) && r.retried[payloads[0]])
			for _, p := range payloads {
				if landed {
					r.sure[p] = true
					delete(r.maybe, p)
				} else {
					r.maybe[p] = true // it may have landed
					r.retried[p] = true
				}
				r.enqueues[p] = enqueueRecord{call: first, ret: ret, sure: r.sure[p]}
			}
			if err == nil && n > 1 {
				r.batches++
			}
			r.mu.Unlock()
			if landed {
				e.Hist.Add(Op{Client: c.ID, Kind: "queue", Name: r.name, Op: "enqueue", Call: first, Return: ret, Outcome: "ok",
					Detail: fmt.Sprintf("%v %v", ids, payloads)})
				break
			}
		}
		pause(ctx, time.Duration(5+e.Rand(20))*time.Millisecond)
	}
}

// consume is one process's consumer: a Consume pool on the process's
// shared session, beside the process's holds, started again on the next
// session whenever its session ends.
func (r *queueRun) consume(ctx context.Context, e *Env, c *Client) {
	q := r.q(e, c.Cli)
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		err = q.Consume(ctx, s, r.handler(e, c, s),
			queue.WithWorkers(queueWorkers), queue.WithBatch(queueBatch),
			queue.WithClaimTimeout(queueClaimTimeout), queue.WithDrainTimeout(queueDrain))
		if err != nil && ctx.Err() == nil && s.Err() == nil {
			e.Hist.Add(Op{Client: c.ID, Kind: "queue", Name: r.name, Op: "consume", Call: time.Now(), Return: time.Now(), Outcome: "fail", Detail: err.Error()})
			pause(ctx, 50*time.Millisecond)
		}
	}
}

// handler returns the handler of one Consume call on session s. Most
// messages are worked on briefly and acked; now and then a handler fails
// (Nack with the queue's backoff), panics (recovered, Nack), runs past
// its claim timeout (given back, redelivered), or "crashes" its process:
// the process's session goes, with everything its workers held, so those
// messages must come back.
func (r *queueRun) handler(e *Env, c *Client, s *session.Session) queue.Handler {
	return func(ctx context.Context, m *queue.Message) (err error) {
		h := handling{client: c.ID, id: m.ID, payload: string(m.Payload), token: m.Token(), lease: int64(s.Lease()), attempt: m.Attempt, start: time.Now()}
		defer func() {
			if h.end.IsZero() {
				h.end = time.Now()
			}
			h.ok = err == nil && h.ok
			h.timedOut = errors.Is(context.Cause(ctx), queue.ErrClaimTimeout)
			r.mu.Lock()
			r.runs = append(r.runs, h)
			r.mu.Unlock()
		}()
		c.Stall(e)
		h.kind = "ok"
		switch n := e.Rand(200); {
		case n < 5:
			h.kind = "crash"
			e.Hist.Add(Op{Client: c.ID, Kind: "queue", Name: r.name, Op: "crash", Call: time.Now(), Return: time.Now(), Token: h.token, Detail: m.ID})
			c.Crash(s)
			<-ctx.Done() // the claim went with the session
			return ctx.Err()
		case n < 8:
			h.kind = "slow"
			select { // stuck past the claim timeout, until told
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(3 * queueClaimTimeout):
				// WithClaimTimeout promised to cancel it after one.
				e.Stats.Violation("queue: client %d's handler of message %s ran %v, 3 claim timeouts, and its ctx was not cancelled", c.ID, m.ID, 3*queueClaimTimeout)
				return errors.New("slow handler finished after its claim timeout")
			}
		case n < 14:
			h.kind = "fail"
			return errors.New("handler failed")
		case n < 16:
			h.kind = "panic"
			panic("handler panicked")
		}
		work := time.Duration(e.Rand(5)) * time.Millisecond
		if r.broken {
			work = time.Duration(50+e.Rand(100)) * time.Millisecond
		}
		time.Sleep(work) // the job
		h.ok = true
		if r.broken {
			h.end = time.Now()
			sp, _ := keys.New(e.Root, keys.KindQueue, r.name)
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			owner := m.IsOwner() // names the claim key; its compare is what this "Ack" leaves out
			c.Cli.Txn(actx).Then(clientv3.OpDelete(sp.Key("f", m.ID)), clientv3.OpDelete(sp.Key("v", m.ID)),
				clientv3.OpDelete(string(owner.KeyBytes()))).Commit()
		}
		return nil
	}
}

// drain claims and acks what is left with a fresh consumer, recording its
// claims as handler runs. It gives up after 10 s without a claim: the
// claims of dead consumers are back after their TTL (2 s), so a queue
// that stays stuck that long is stuck for good.
func (r *queueRun) drain(ctx context.Context, e *Env) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stuck := time.AfterFunc(10*time.Second, cancel)
	defer stuck.Stop()
	s, err := session.New(ctx, e.Admin, session.WithTTL(10*time.Second), session.WithPrefix(e.Root))
	if err != nil {
		e.Stats.Violation("queue: drain session: %v", err)
		return false
	}
	defer s.Close()
	q := r.q(e, e.Admin)
	for {
		st, err := q.Stats(ctx)
		if err != nil {
			e.Stats.Violation("queue: stats: %v", err)
			return false
		}
		if st.Ready+st.Claimed+st.Delayed == 0 {
			if st.Dead > 0 {
				e.Stats.Violation("queue: %d messages dead-lettered with MaxAttempts 1000", st.Dead)
			}
			return true
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		ms, err := q.ClaimN(cctx, s, queueBatch)
		ccancel()
		if err != nil {
			if ctx.Err() != nil {
				e.Stats.Violation("queue: could not drain: %+v", st)
				return false
			}
			continue // claims of dead consumers expire with their leases
		}
		stuck.Reset(10 * time.Second)
		now := time.Now()
		r.mu.Lock()
		for _, m := range ms {
			r.runs = append(r.runs, handling{client: -1, id: m.ID, payload: string(m.Payload), token: m.Token(), lease: int64(s.Lease()),
				attempt: m.Attempt, start: now, end: now, ok: true, kind: "drain"})
		}
		r.mu.Unlock()
		q.AckAll(ctx, ms)
	}
}

// check drains the queue, then judges the run from etcd's history and the
// handlers' record (see checkHistory); without a complete history it
// requires at least that the queue ended empty and that every enqueued
// payload was handled successfully once.
func (r *queueRun) check(e *Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.drain(ctx, e) // a failure is a violation; the checks still say what became of each message
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if end, err := e.Admin.Get(sctx, "rev-probe"); err == nil {
		e.Log.Sync(sctx, end.Header.Revision)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	redelivered, timedOut := 0, 0
	kinds := map[string]int{}
	for _, h := range r.runs {
		if h.attempt > 1 {
			redelivered++
		}
		if h.timedOut {
			timedOut++
		}
		kinds[h.kind]++
	}
	e.Stats.mu.Lock()
	for k, n := range kinds {
		e.Stats.Faults["queue-handler-"+k] = n
	}
	e.Stats.Faults["queue-claim-timeouts"] = timedOut
	e.Stats.Faults["queue-messages"] = len(r.sure)
	e.Stats.Faults["queue-handled"] = len(r.runs)
	e.Stats.Faults["queue-redelivered"] = redelivered
	e.Stats.Faults["queue-enqueue-batches"] = r.batches
	e.Stats.mu.Unlock()
	if !e.Log.Complete() {
		e.Stats.Figure("queue history checks skipped: history incomplete", 0)
		handled := map[string]bool{}
		for _, h := range r.runs {
			if h.ok {
				handled[h.payload] = true
			}
		}
		for p := range r.sure {
			if !handled[p] {
				e.Stats.Violation("queue: message %s was enqueued and never handled: lost", p)
			}
		}
		return
	}
	r.checkHistory(e)
}
