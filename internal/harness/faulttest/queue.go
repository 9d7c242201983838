package faulttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// queueRun is the queue workload's shared record: what was enqueued, and
// every successful Ack per message.
type queueRun struct {
	name    string
	mu      sync.Mutex
	sure    map[string]bool   // payloads whose Enqueue succeeded
	maybe   map[string]bool   // payloads whose last Enqueue attempt was ambiguous
	retried map[string]bool   // payloads with any ambiguous Enqueue attempt
	acks    map[string]int    // successful Acks per message id
	pay     map[string]string // message id -> payload
	ackd    map[string]bool   // payloads whose Ack timed out, then was refused with ErrClaimLost
	lost    int               // acks refused with ErrClaimLost
}

func newQueueRun(name string) *queueRun {
	return &queueRun{name: name, retried: map[string]bool{}, sure: map[string]bool{}, maybe: map[string]bool{}, acks: map[string]int{}, ackd: map[string]bool{}, pay: map[string]string{}}
}

func (r *queueRun) q(e *Env, cli *clientv3.Client) *queue.Queue {
	return queue.New(cli, r.name, queue.WithPrefix(e.Root), queue.WithMaxAttempts(1000))
}

// produce enqueues numbered payloads. A retried Enqueue carries the same
// idempotency key, so an ambiguous failure never makes two messages, and
// a payload counts as enqueued once any attempt succeeded.
func (r *queueRun) produce(ctx context.Context, e *Env, c *Client) {
	q := r.q(e, c.Cli)
	for i := 0; ctx.Err() == nil; i++ {
		payload := fmt.Sprintf("c%d-%d", c.ID, i)
		for ctx.Err() == nil {
			ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
			id, err := q.Enqueue(ectx, []byte(payload), queue.WithIdempotencyKey(payload))
			cancel()
			r.mu.Lock()
			if err == nil {
				r.sure[payload] = true
				delete(r.maybe, payload)
			} else {
				r.maybe[payload] = true // it may have landed
				r.retried[payload] = true
			}
			r.mu.Unlock()
			if err == nil {
				e.Hist.Add(Op{Client: c.ID, Kind: "queue", Name: r.name, Op: "enqueue", Call: time.Now(), Return: time.Now(), Outcome: "ok", Detail: id + " " + payload})
				break
			}
		}
		pause(ctx, time.Duration(5+e.Rand(20))*time.Millisecond)
	}
}

// consume is one queue worker of a process: it claims and acks on the
// process's shared session, beside the process's other worker and its
// holds. Now and then the process "crashes" mid-job: the message is
// dropped without an ack and the process's session goes, with everything
// its workers held, so the message must come back.
func (r *queueRun) consume(ctx context.Context, e *Env, c *Client) {
	q := r.q(e, c.Cli)
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		if r.consumeWith(ctx, e, c, q, s) {
			c.Crash(s)
		}
	}
}

// consumeWith works until the session ends; it returns true when the
// process should crash.
func (r *queueRun) consumeWith(ctx context.Context, e *Env, c *Client, q *queue.Queue, s *session.Session) bool {
	for ctx.Err() == nil && s.Err() == nil {
		m, err := q.Claim(ctx, s)
		if err != nil {
			continue
		}
		c.Stall(e)
		if e.Rand(40) == 0 {
			e.Hist.Add(Op{Client: c.ID, Kind: "queue", Name: r.name, Op: "crash", Call: time.Now(), Return: time.Now(), Detail: m.ID})
			return true // the caller ends the session without acking
		}
		ambiguous := false
		for try := 0; try < 5; try++ {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			err = m.Ack(actx)
			cancel()
			if err == nil || errors.Is(err, queue.ErrClaimLost) {
				break
			}
			ambiguous = true // this attempt may have been applied
		}
		r.mu.Lock()
		switch {
		case err == nil:
			r.acks[m.ID]++
			r.pay[m.ID] = string(m.Payload)
		case errors.Is(err, queue.ErrClaimLost):
			r.lost++
			if ambiguous {
				// An earlier attempt may have acked it before the claim
				// expired; the queue cannot tell, and says the claim is
				// lost, which is the safe answer.
				r.ackd[string(m.Payload)] = true
			}
		}
		r.mu.Unlock()
	}
	return false
}

// check drains what is left with a fresh consumer, then requires that
// every enqueued message was acked exactly once: never lost, never acked
// twice.
func (r *queueRun) check(e *Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := session.New(ctx, e.Admin, session.WithTTL(10*time.Second), session.WithPrefix(e.Root))
	if err != nil {
		e.Stats.Violation("queue: drain session: %v", err)
		return
	}
	defer s.Close()
	q := r.q(e, e.Admin)
	for {
		st, err := q.Stats(ctx)
		if err != nil {
			e.Stats.Violation("queue: stats: %v", err)
			return
		}
		if st.Ready+st.Claimed+st.Delayed == 0 {
			break
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := q.Claim(cctx, s)
		ccancel()
		if err != nil {
			if ctx.Err() != nil {
				e.Stats.Violation("queue: could not drain: %+v", st)
				return
			}
			continue // claims of dead consumers expire with their leases
		}
		if err := m.Ack(ctx); err == nil {
			r.mu.Lock()
			r.acks[m.ID]++
			r.pay[m.ID] = string(m.Payload)
			r.mu.Unlock()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if st, err := q.Stats(ctx); err == nil && st.Dead > 0 {
		e.Stats.Violation("queue: %d messages dead-lettered with MaxAttempts 1000", st.Dead)
	}
	// Every message (id) is acked at most once; every payload whose
	// Enqueue succeeded is acked (or was acked by an attempt whose answer
	// was lost). A payload may live in two messages only if a retried
	// Enqueue came after the first message was acked, when the queue no
	// longer knows its idempotency key (documented).
	perPayload := map[string]int{}
	for id, n := range r.acks {
		p := r.pay[id]
		if n > 1 {
			e.Stats.Violation("queue: message %s (%s) acked %d times", id, p, n)
		}
		if !r.sure[p] && !r.maybe[p] {
			e.Stats.Violation("queue: acked a message %q nobody enqueued", p)
		}
		perPayload[p]++
	}
	for p := range r.sure {
		switch n := perPayload[p]; {
		case n == 0 && r.ackd[p]:
			// Acked by an attempt whose answer was lost: gone, not lost.
		case n == 0:
			e.Stats.Violation("queue: message %s was enqueued and never acked: lost", p)
		case n > 1 && !r.retried[p]:
			e.Stats.Violation("queue: payload %s, enqueued once, was delivered as %d messages", p, n)
		}
	}
	r.checkClaims(e)
	e.Stats.mu.Lock()
	e.Stats.Faults["queue-messages"] = len(r.sure)
	e.Stats.Faults["queue-claims-lost"] = r.lost
	e.Stats.mu.Unlock()
}

// checkClaims replays etcd's history of the queue's claim keys and
// requires that no message is ever held by two live claims at once: at
// every revision, at most one claim key per message exists (a claim key
// lives on its consumer's lease, so etcd deletes it when the lease ends).
// Workers that share a session are where this broke before.
func (r *queueRun) checkClaims(e *Env) {
	if !e.Log.Complete() {
		e.Stats.Figure("queue claims check skipped: history incomplete", 0)
		return
	}
	sp, _ := keys.New(e.Root, keys.KindQueue, r.name)
	pre := sp.Part("c")
	live := map[string]map[string]bool{} // message id -> claim keys
	for _, ev := range e.Log.Events() {
		if !strings.HasPrefix(ev.Key, pre) {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(ev.Key, pre), "/")
		if ev.Delete {
			delete(live[id], ev.Key)
			continue
		}
		if live[id] == nil {
			live[id] = map[string]bool{}
		}
		live[id][ev.Key] = true
		if n := len(live[id]); n > 1 {
			e.Stats.Violation("queue: message %s held by %d live claims at rev %d", id, n, ev.Rev)
		}
	}
}
