package schedule

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Tick is one run of a schedule, as fn receives it.
type Tick struct {
	// Time is the tick's scheduled time (for a Trigger, when it was
	// asked for).
	Time time.Time
	// Seq numbers the schedule's runs: 1 for its first, one more for
	// every run started since, whichever replica started it. A re-run
	// after a crash keeps its run's Seq.
	Seq int64
	// Token is the run's fencing token: the etcd revision that claimed
	// it, strictly greater than the token of every run claimed before it
	// (a re-run's too). Fence writes elsewhere with it; guard writes in
	// etcd with IsOwner.
	Token int64
	// Attempt is 1, or 2 for a re-run after the first attempt's replica
	// crashed (CrashRerun).
	Attempt int
	// Trigger reports a run asked for by Trigger (coord schedule trigger)
	// rather than by the spec.
	Trigger bool

	key string
}

// IsOwner is a compare that holds while this run's key exists as the
// claim created it: until the run ends, or its session does. Add it to
// your own Txns so that a run that lost its session (a process paused
// past its TTL) cannot write.
func (t Tick) IsOwner() clientv3.Cmp {
	if t.key == "" {
		return clientv3.Compare(clientv3.CreateRevision("\x00coord/schedule/none"), "<", 0)
	}
	return clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.Token)
}

// Key returns the etcd key of the run, held while it runs.
func (t Tick) Key() string { return t.key }
