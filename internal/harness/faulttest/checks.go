package faulttest

import (
	"fmt"
	"strings"
	"time"
)

// lateRenewal is how late past its quarter-TTL cadence a session's last
// acknowledged renewal must be, when a short cut begins, for a loss in
// that cut to be put down to a starved machine rather than to the
// session.
const lateRenewal = 150 * time.Millisecond

// checkPartitions checks what the partition scenario promises:
//   - a client cut off for half its TTL keeps what it holds (its sessions
//     do not report a loss during or right after the cut), unless its
//     session's renewals were already late when the cut began (a starved
//     machine: counted as a figure, not a violation);
//   - a client cut off for 1.5 TTL loses what it held and says so: every
//     hold it had when the cut began, and did not release, reports a loss
//     by the end of the cut.
func checkPartitions(e *Env) {
	ops := e.Hist.Ops()
	for _, n := range ops {
		if n.Kind != "nemesis" || !strings.HasPrefix(n.Op, "blackhole") {
			continue
		}
		switch n.Op {
		case "blackhole-short":
			// Token is the session's lease and Detail the send time of its
			// last acknowledged renewal, as the cut began.
			renewed, _ := time.Parse(time.RFC3339Nano, n.Detail)
			lease := fmt.Sprintf("lease %x ", n.Token)
			for _, o := range ops {
				if o.Client == n.Client && o.Op == "lost" && strings.Contains(o.Detail, "not renewed in time") &&
					!o.Return.Before(n.Call) && o.Return.Before(n.Return.Add(300*time.Millisecond)) {
					if lag := n.Call.Sub(renewed); n.Token != 0 && strings.Contains(o.Detail, lease) && lag > e.TTL/4+lateRenewal {
						// Renewals are due every quarter TTL: this one's were
						// already late when the cut began (a starved
						// machine), and the cut took what was left.
						e.Stats.Figure("short cut: lost, renewals already late by", lag-e.TTL/4)
						continue
					}
					e.Stats.Violation("client %d lost %s/%s token %d during a partition of only half its TTL (%s..%s; its last acknowledged renewal was sent at %s)",
						n.Client, o.Kind, o.Name, o.Token, n.Call.Format("15:04:05.000"), n.Return.Format("15:04:05.000"), renewed.Format("15:04:05.000"))
				}
			}
		case "blackhole-long":
			for _, a := range ops {
				if a.Client != n.Client || a.Op != "acquire" || a.Outcome != "ok" || !a.Return.Before(n.Call) {
					continue
				}
				ended := false
				for _, o := range ops {
					if o.Client == a.Client && o.Kind == a.Kind && o.Name == a.Name && o.Token == a.Token &&
						(o.Op == "lost" || o.Op == "release") && o.Return.Before(n.Call) {
						ended = true
					}
				}
				if ended {
					continue
				}
				reported := false
				for _, o := range ops {
					if o.Client == a.Client && o.Kind == a.Kind && o.Name == a.Name && o.Token == a.Token && o.Op == "lost" &&
						!o.Return.After(n.Return.Add(time.Second)) {
						reported = true
					}
				}
				// A hold the application let go of during the cut (it called
				// Unlock, which may hang until the network heals) needs no
				// loss report: nobody relies on it any more.
				for _, o := range ops {
					if o.Client == a.Client && o.Kind == a.Kind && o.Name == a.Name && o.Token == a.Token && o.Op == "release" && o.Call.Before(n.Return) {
						reported = true
					}
				}
				if !reported {
					e.Stats.Violation("client %d held %s/%s token %d through a partition of 1.5 TTL without reporting the loss", n.Client, a.Kind, a.Name, a.Token)
				} else {
					e.Stats.Figure("long partition: holds lost and reported", 0)
				}
			}
		}
	}
}

// figurePauses measures what no invariant can forbid: how long a paused
// holder went on believing it held after etcd had already taken its key
// away (from the deletion in etcd's log to its first write after it
// resumed, which its fencing then rejected).
func figurePauses(e *Env) {
	ops := e.Hist.Ops()
	for _, n := range ops {
		if n.Kind != "nemesis" || n.Op != "pause" {
			continue
		}
		for _, w := range ops {
			if w.Client != n.Client || w.Op != "write" || w.Call.Before(n.Return.Add(-50*time.Millisecond)) || w.Call.After(n.Return.Add(time.Second)) {
				continue
			}
			seen, _ := e.Log.DeletedAt(w.Token)
			if seen.IsZero() || seen.After(w.Call) {
				continue
			}
			e.Stats.Figure("paused holder believed it held after losing it", w.Call.Sub(seen))
			if w.Outcome == "ok" {
				e.Stats.Violation("client %d's fenced write with token %d was accepted after its key was deleted", w.Client, w.Token)
			}
			break
		}
	}
}
