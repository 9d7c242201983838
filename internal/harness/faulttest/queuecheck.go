package faulttest

import (
	"sort"
	"strconv"
	"strings"

	"github.com/coord-go/coord/internal/keys"
)

// checkHistory judges the queue workload from etcd's history of the
// queue's keys and the sessions' marker keys, beside the handlers' record:
//
//   - acked exactly once, by a live claim after its handler: a message is
//     acked by the Txn that deletes its payload, which must also delete its
//     in-flight entry and exactly one claim key of it (the claim is live:
//     etcd deletes claim keys with their lease), under which a handler ran
//     and returned nil before the Ack landed; and it is never claimed
//     again after its Ack;
//   - never lost: every message etcd ever stored was acked, and every
//     payload whose Enqueue succeeded is in a message;
//   - no message in two messages unless its Enqueue was retried;
//   - no message held by two live claims at once (checkClaims);
//   - no message handled by two claims whose sessions were both live at
//     once: when two handler runs of one message overlap (each relying on
//     its claim from its start until it returned, or until its claim
//     timeout passed), the earlier claim's lease must have ended before
//     the later claim was made. A redelivery after a lost session is
//     expected; one while the first holder's session lived is a double
//     delivery that no fault excuses.
func (r *queueRun) checkHistory(e *Env) {
	sp, _ := keys.New(e.Root, keys.KindQueue, r.name)
	claimPre, flightPre, payPre := sp.Part("c"), sp.Part("f"), sp.Part("v")
	markerPre := e.Root + keys.KindSession + "/"
	// A claim is a message's claim key, named by the message and its
	// token (the key's create revision: one batch's claims share it).
	type claim struct {
		id    string
		token int64
	}
	claims := map[claim]bool{}
	claimsAt := map[int64]int{}      // claim keys created per revision
	deleted := map[int64][]Event{}   // claim keys and in-flight entries deleted, by revision
	leaseEnd := map[int64]int64{}    // lease -> the revision its marker key went with it
	payloadOf := map[string]string{} // message id -> payload, from Enqueue's put
	var acks []Event                 // payload deletions
	for _, ev := range e.Log.Events() {
		switch {
		case strings.HasPrefix(ev.Key, markerPre):
			if ev.Delete {
				if l, err := strconv.ParseUint(strings.TrimPrefix(ev.Key, markerPre), 16, 64); err == nil {
					leaseEnd[int64(l)] = ev.Rev
				}
			}
		case strings.HasPrefix(ev.Key, claimPre):
			if ev.Delete {
				deleted[ev.Rev] = append(deleted[ev.Rev], ev)
				continue
			}
			id, _, _ := strings.Cut(strings.TrimPrefix(ev.Key, claimPre), "/")
			if c := (claim{id, ev.CreateRev}); !claims[c] {
				claims[c] = true
				claimsAt[ev.CreateRev]++
			}
		case strings.HasPrefix(ev.Key, flightPre):
			if ev.Delete {
				deleted[ev.Rev] = append(deleted[ev.Rev], ev)
			}
		case strings.HasPrefix(ev.Key, payPre):
			id := strings.TrimPrefix(ev.Key, payPre)
			if ev.Delete {
				acks = append(acks, ev)
			} else {
				payloadOf[id] = ev.Value
			}
		}
	}
	runsBy := map[claim][]handling{}
	byID := map[string][]handling{}
	for _, h := range r.runs {
		runsBy[claim{h.id, h.token}] = append(runsBy[claim{h.id, h.token}], h)
		byID[h.id] = append(byID[h.id], h)
		if !claims[claim{h.id, h.token}] {
			e.Stats.Violation("queue: a handler ran on message %s under claim %d, which etcd never had for it", h.id, h.token)
		}
	}

	// Acks: the payload's deletion, with the in-flight entry and one live
	// claim, after that claim's handler returned nil.
	ackRev := map[string]int64{}
	acksAt := map[int64]int{}
	for _, a := range acks {
		id := strings.TrimPrefix(a.Key, payPre)
		if prev, ok := ackRev[id]; ok {
			e.Stats.Violation("queue: message %s acked twice, at revs %d and %d", id, prev, a.Rev)
		}
		ackRev[id] = a.Rev
		acksAt[a.Rev]++
		flight := false
		var by []Event
		for _, d := range deleted[a.Rev] {
			switch {
			case d.Key == flightPre+id:
				flight = true
			case strings.HasPrefix(d.Key, claimPre+id+"/"):
				by = append(by, d)
			}
		}
		switch {
		case !flight:
			e.Stats.Violation("queue: message %s's payload was deleted at rev %d without its in-flight entry", id, a.Rev)
		case len(by) != 1:
			e.Stats.Violation("queue: message %s was acked at rev %d releasing %d live claims of it (one required)", id, a.Rev, len(by))
		default:
			tok := by[0].CreateRev
			hs := runsBy[claim{id, tok}]
			switch {
			case len(hs) == 0:
				e.Stats.Violation("queue: message %s was acked at rev %d by claim %d, under which no handler ran", id, a.Rev, tok)
			case !hs[0].ok:
				e.Stats.Violation("queue: message %s was acked at rev %d by claim %d, whose handler did not return nil", id, a.Rev, tok)
			case !hs[0].end.Before(a.Seen):
				e.Stats.Violation("queue: message %s was acked at rev %d by claim %d before its handler returned", id, a.Rev, tok)
			}
		}
	}
	for c := range claims {
		if rev, ok := ackRev[c.id]; ok && c.token > rev {
			e.Stats.Violation("queue: message %s was claimed (token %d) after its Ack at rev %d", c.id, c.token, rev)
		}
	}

	// Nothing lost, nothing made twice.
	perPayload := map[string]int{}
	for id, p := range payloadOf {
		if _, ok := ackRev[id]; !ok {
			e.Stats.Violation("queue: message %s (%s) was enqueued and never acked: lost", id, p)
		}
		if !r.sure[p] && !r.maybe[p] {
			e.Stats.Violation("queue: message %s holds a payload %q nobody enqueued", id, p)
		}
		perPayload[p]++
	}
	for p := range r.sure {
		switch n := perPayload[p]; {
		case n == 0:
			e.Stats.Violation("queue: the Enqueue of %s succeeded, and etcd never stored it: lost", p)
		case n > 1 && !r.retried[p]:
			// A payload may live in two messages only if a retried Enqueue
			// came after the first message was acked, when the queue no
			// longer knows its idempotency key (documented).
			e.Stats.Violation("queue: payload %s, enqueued once, was stored as %d messages", p, n)
		}
	}

	// No message handled under two claims whose sessions both lived.
	for id, hs := range byID {
		sort.Slice(hs, func(a, b int) bool { return hs[a].token < hs[b].token })
		for i, h1 := range hs {
			for _, h2 := range hs[i+1:] {
				if !h1.start.Before(h2.believedUntil()) || !h2.start.Before(h1.believedUntil()) {
					continue
				}
				if end, ok := leaseEnd[h1.lease]; ok && end < h2.token {
					continue // a redelivery after the first session ended
				}
				e.Stats.Violation("queue: message %s was handled under claims %d (client %d, lease %x, %s..%s) and %d (client %d, lease %x, from %s) at once, while both sessions lived",
					id, h1.token, h1.client, h1.lease, h1.start.Format("15:04:05.000"), h1.believedUntil().Format("15:04:05.000"),
					h2.token, h2.client, h2.lease, h2.start.Format("15:04:05.000"))
			}
		}
	}
	r.checkClaims(e)

	claimBatches, ackBatches, maxClaim, maxAck := 0, 0, 0, 0
	for _, n := range claimsAt {
		if n > 1 {
			claimBatches++
		}
		maxClaim = max(maxClaim, n)
	}
	for _, n := range acksAt {
		if n > 1 {
			ackBatches++
		}
		maxAck = max(maxAck, n)
	}
	e.Stats.mu.Lock()
	e.Stats.Faults["queue-acked"] = len(ackRev)
	e.Stats.Faults["queue-claims"] = len(claims)
	e.Stats.Faults["queue-claim-txns-of-2+"] = claimBatches
	e.Stats.Faults["queue-ack-txns-of-2+"] = ackBatches
	e.Stats.Faults["queue-largest-claim-txn"] = maxClaim
	e.Stats.Faults["queue-largest-ack-txn"] = maxAck
	e.Stats.mu.Unlock()
}

// checkClaims replays etcd's history of the queue's claim keys and
// requires that no message is ever held by two live claims at once: at
// every revision, at most one claim key per message exists (a claim key
// lives on its consumer's lease, so etcd deletes it when the lease ends).
// Workers that share a session are where this broke before.
func (r *queueRun) checkClaims(e *Env) {
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
