package schedule

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/coord-go/coord/internal/watch"
)

// The keys of a schedule, under <root>schedule/<name>/:
//
//	state              the last tick decided, the run count, pause and trigger (durable)
//	h/<seq>            one record per run, the last N (durable)
//	r/<seq>.<id>       a run in progress: held on its runner's session lease
//	m/<id>             a replica following the schedule, on its session lease
//
// Every tick is decided by one compare-and-swap of state on its mod
// revision: the Txn that claims a run also creates the run's key and its
// history record, so a run key never appears without state changing.
const (
	leafState   = "state"
	partHistory = "h"
	partRun     = "r"
	partMember  = "m"
)

// state is the value of the state key.
type state struct {
	// Last is the latest tick decided: run, or skipped. Ticks at or
	// before it are never claimed again.
	Last time.Time `json:"last,omitzero"`
	// Seq counts the runs started.
	Seq int64 `json:"seq,omitempty"`
	// Spec is the spec of the replica that decided last, for operators.
	Spec    string           `json:"spec,omitempty"`
	Paused  *mark            `json:"paused,omitempty"`
	Trigger *mark            `json:"trigger,omitempty"`
	Skipped map[string]int64 `json:"skipped,omitempty"`
	// By and At are who decided last and what its clock said then, from
	// which every other replica checks the skew of its clock.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at,omitzero"`
	// Due is when the tick decided last was due (its time plus jitter).
	Due time.Time `json:"due,omitzero"`
}

// mark is who paused or triggered, and when.
type mark struct {
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

func (s state) encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("schedule: encode state: %v", err)) // plain data: cannot fail
	}
	return string(b)
}

func decodeState(v []byte) (state, error) {
	var s state
	if err := json.Unmarshal(v, &s); err != nil {
		return state{}, fmt.Errorf("schedule: state %.64q: %w", v, err)
	}
	return s, nil
}

// skip returns s with n more ticks skipped for reason.
func (s state) skip(reason string, n int64) state {
	if n <= 0 {
		return s
	}
	m := make(map[string]int64, len(s.Skipped)+1)
	for k, v := range s.Skipped {
		m[k] = v
	}
	m[reason] += n
	s.Skipped = m
	return s
}

// Reasons a tick is skipped, as counted in Status.Skipped and the
// coord_schedule_skipped_total metric.
const (
	SkipMissed  = "missed"  // no replica could start it in time (see CatchupPolicy)
	SkipOverlap = "overlap" // an earlier run was still going (see OverlapPolicy)
	SkipPaused  = "paused"  // the schedule was paused
)

// Outcome is how a run ended, or that it has not.
type Outcome string

// Outcomes of a run.
const (
	Running   Outcome = "running"   // started or waiting to start (OverlapBuffer, OverlapCancel), not ended
	Succeeded Outcome = "succeeded" // fn returned nil
	Failed    Outcome = "failed"    // fn returned an error
	Cancelled Outcome = "cancelled" // cancelled by OverlapCancel, or by the end of Run's ctx
	Crashed   Outcome = "crashed"   // its replica's session ended while it ran
)

// Run is one run of a schedule, as its history records it.
type Run struct {
	Seq     int64     `json:"seq"`
	Tick    time.Time `json:"tick"`              // the scheduled time
	Attempt int       `json:"attempt"`           // 1, or 2 for a re-run after a crash
	Trigger bool      `json:"trigger,omitempty"` // started by Trigger rather than the spec
	Replica string    `json:"replica"`
	Token   int64     `json:"token,omitempty"` // the run's fencing token
	Start   time.Time `json:"start"`           // when fn started (while it waits: when it was claimed)
	End     time.Time `json:"end,omitzero"`    // zero while running
	Outcome Outcome   `json:"outcome"`
	Error   string    `json:"error,omitempty"`
	// Key is the run's key in etcd while it runs.
	Key string `json:"key,omitempty"`
}

// Duration is how long the run took, 0 while it runs.
func (r Run) Duration() time.Duration {
	if r.End.IsZero() {
		return 0
	}
	return r.End.Sub(r.Start)
}

func (r Run) encode() string {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("schedule: encode run: %v", err))
	}
	return string(b)
}

func decodeRun(v []byte) (Run, error) {
	var r Run
	if err := json.Unmarshal(v, &r); err != nil {
		return Run{}, fmt.Errorf("schedule: run %.64q: %w", v, err)
	}
	return r, nil
}

// seqID is a run's sequence number as its keys spell it: fixed width, so
// that keys sort as runs do.
func seqID(seq int64) string { return fmt.Sprintf("%020d", seq) }

// view is what a replica knows of the schedule at one revision of its
// mirror.
type view struct {
	rev      int64
	exists   bool  // the state key exists
	stateRev int64 // its mod revision: 0 when absent
	st       state
	bad      error   // the state key does not decode
	runs     []live  // run keys, oldest first
	hist     []entry // history records, by seq
	rank     int     // replicas that joined before this one
}

// live is a run key in the mirror.
type live struct {
	key string
	rev int64 // create revision: the run's token
	seq int64
}

// entry is a history record in the mirror.
type entry struct {
	key string
	mod int64
	run Run
}

// snapshot reads the schedule's state from the mirror's view.
func (s *Schedule) snapshot(v *watch.View, member int64, cache map[string]entry) view {
	out := view{rev: v.Rev()}
	out.rank, _ = v.Line(partMember).Ahead(member)
	if e := v.Get(s.stateKey); e != nil {
		out.exists, out.stateRev = true, e.ModRev
		out.st, out.bad = decodeState(e.Value)
	}
	v.Line(partRun).Each(func(e *watch.Entry) bool {
		l := live{key: e.Key, rev: e.CreateRev}
		if rec, err := e.Record(); err == nil {
			l.seq, _ = strconv.ParseInt(rec.Meta["seq"], 10, 64)
		}
		out.runs = append(out.runs, l)
		return true
	})
	// Records are decoded once per version: a replica looks at the view
	// after every change of the schedule, and the history can be long.
	seen := make(map[string]entry, len(cache))
	v.Line(partHistory).Each(func(e *watch.Entry) bool {
		c, ok := cache[e.Key]
		if !ok || c.mod != e.ModRev {
			r, err := decodeRun(e.Value)
			if err != nil {
				return true
			}
			c = entry{key: e.Key, mod: e.ModRev, run: r}
		}
		seen[e.Key] = c
		out.hist = append(out.hist, c)
		return true
	})
	clear(cache)
	maps.Copy(cache, seen)
	slices.SortFunc(out.hist, func(a, b entry) int { return cmp.Compare(a.run.Seq, b.run.Seq) })
	return out
}

// running reports whether the run key key, created at rev, is in the view.
func (v view) running(key string, rev int64) bool {
	for _, l := range v.runs {
		if l.key == key && (rev == 0 || l.rev == rev) {
			return true
		}
	}
	return false
}
