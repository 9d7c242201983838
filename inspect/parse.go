package inspect

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
)

// parsers read each kind's keys and values. They are the only code here
// that knows a primitive's parts and value formats, one function a kind,
// so a change of layout or of a value format is made in one place. Every
// held key's value is a keys.Record, which member decodes for all of them
// (its age, weight, priority and metadata).
var parsers = map[string]func(*reader, *Primitive, prim) error{
	keys.KindLock:      parseLock,
	keys.KindRWLock:    parseRWLock,
	keys.KindElection:  parseElection,
	keys.KindSemaphore: parseSemaphore,
	keys.KindBarrier:   parseBarrier,
	keys.KindDouble:    parseDoubleBarrier,
	keys.KindLatch:     parseLatch,
	keys.KindQueue:     parseQueue,
	keys.KindSchedule:  parseSchedule,
	keys.KindRateLimit: parseRateLimit,
	keys.KindGroup:     parseGroup,
	keys.KindShard:     parseShard,
}

// parseLock: the line is w/<id>, first in line holds.
func parseLock(r *reader, p *Primitive, k prim) error {
	line := r.part(k, "w")
	if len(line) > 0 {
		p.Holders, p.Waiters = line[:1], line[1:]
	}
	return nil
}

// parseRWLock: readers r/<id> and writers w/<id> share one line ordered by
// revision; readers before the first writer share the lock, a writer holds
// only when it is first.
func parseRWLock(r *reader, p *Primitive, k prim) error {
	line := append(r.part(k, "r"), r.part(k, "w")...)
	sort.Slice(line, func(i, j int) bool { return line[i].Token < line[j].Token })
	writer := func(m Member) bool { return strings.HasPrefix(m.Key, k.sp.Part("w")) }
	n := 0
	for n < len(line) && !writer(line[n]) {
		n++
	}
	switch {
	case len(line) == 0:
	case n == 0:
		p.Holders, p.Waiters, p.Info["mode"] = line[:1], line[1:], "write"
	default:
		p.Holders, p.Waiters, p.Info["mode"] = line[:n], line[n:], "read"
	}
	return nil
}

// parseElection: candidates c/<id>; the "leader" key names the one that
// leads, and its mod revision is the leader's fencing token. The others
// wait in the order the election's rule (the "rule" key) would elect
// them; observers come last, since they never lead.
func parseElection(r *reader, p *Primitive, k prim) error {
	var rule struct{ Priority, Preempt bool }
	if v, ok := k.single("rule"); ok {
		json.Unmarshal([]byte(v), &rule)
	}
	switch {
	case rule.Priority && rule.Preempt:
		p.Info["rule"] = "priority, preempt"
	case rule.Priority:
		p.Info["rule"] = "priority"
	}
	line := r.part(k, "c")
	leader := -1
	if kv := k.kv("leader"); kv != nil {
		for i := range line {
			if line[i].Key == string(kv.Value) {
				leader = i
				line[i].Token = kv.ModRevision
			}
		}
	}
	if leader >= 0 {
		p.Holders = []Member{line[leader]}
		line = append(line[:leader:leader], line[leader+1:]...)
	}
	sort.SliceStable(line, func(i, j int) bool {
		a, b := line[i], line[j]
		if a.Observer != b.Observer {
			return !a.Observer
		}
		if rule.Priority && a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Token < b.Token
	})
	p.Waiters = line
	return nil
}

// parseSemaphore: "capacity" holds the capacity (first field); requests
// q/<id> hold their weight in their record. Strict FIFO: the first request
// that does not fit blocks every later one.
func parseSemaphore(r *reader, p *Primitive, k prim) error {
	capacity := int64(0)
	if v, ok := k.single("capacity"); ok {
		if f := strings.Fields(v); len(f) > 0 {
			capacity, _ = strconv.ParseInt(f[0], 10, 64)
		}
		p.Info["capacity"] = strconv.FormatInt(capacity, 10)
	}
	line := r.part(k, "q")
	for i := range line {
		line[i].Weight = max(line[i].Weight, 1) // as the semaphore counts an unreadable request
	}
	var used int64
	for i, m := range line {
		if used+m.Weight > capacity {
			p.Waiters = line[i:]
			break
		}
		used += m.Weight
		p.Holders = append(p.Holders, m)
	}
	p.Info["in use"] = strconv.FormatInt(used, 10)
	return nil
}

// parseBarrier: holds h/<id> keep the gate shut; "released" marks a
// release.
func parseBarrier(r *reader, p *Primitive, k prim) error {
	p.Holders = r.part(k, "h")
	if _, ok := k.single("released"); ok {
		p.Info["released"] = "yes"
	}
	if len(p.Holders) > 0 {
		p.Info["state"] = "held"
	} else {
		p.Info["state"] = "open"
	}
	return nil
}

// parseDoubleBarrier: participants p/<id>; "count" and "round" as stored.
func parseDoubleBarrier(r *reader, p *Primitive, k prim) error {
	p.Holders = r.part(k, "p")
	for _, leaf := range []string{"count", "round"} {
		if v, ok := k.single(leaf); ok {
			p.Info[leaf] = v
		}
	}
	return nil
}

// parseLatch: "count" as stored, one d/<id> per count-down.
func parseLatch(r *reader, p *Primitive, k prim) error {
	if v, ok := k.single("count"); ok {
		p.Info["count"] = v
	}
	p.Info["counted down"] = strconv.Itoa(len(r.part(k, "d")))
	return nil
}

// parseQueue: a queue can hold any number of messages, so it is never
// read whole: the counts come from the queue package's own Stats (counted
// by the server), and only the claims c/<id> are read, as its holders
// (a claim's record names its message). Payloads are never read.
func parseQueue(r *reader, p *Primitive, k prim) error {
	q := queue.New(r.cli, k.sp.Name(), queue.WithPrefix(r.root))
	st, err := q.Stats(r.ctx)
	if err != nil {
		return err
	}
	p.Info["ready"] = strconv.FormatInt(st.Ready, 10)
	p.Info["claimed"] = strconv.FormatInt(st.Claimed, 10)
	p.Info["delayed"] = strconv.FormatInt(st.Delayed, 10)
	p.Info["dead"] = strconv.FormatInt(st.Dead, 10)
	c := k.sp.Part("c")
	if k.kvs, err = r.read(c, keys.RangeEnd(c)); err != nil {
		return err
	}
	p.Holders = r.part(k, "c")
	return nil
}

// parseSchedule: "state" holds the last tick decided, the runs started,
// the ticks skipped and any pause or pending trigger; runs in progress
// r/<seq>.<id> (on their runner's lease) are its holders, and the
// replicas following it m/<id> its waiters. The history h/<seq> is
// bounded by the schedule's history size and shown by coord schedule
// history, not here.
func parseSchedule(r *reader, p *Primitive, k prim) error {
	if v, ok := k.single("state"); ok {
		var st struct {
			Last    time.Time
			Seq     int64
			Spec    string
			Paused  *struct{ By string }
			Trigger *struct{ By string }
			Skipped map[string]int64
		}
		json.Unmarshal([]byte(v), &st)
		p.Info["spec"] = fmt.Sprintf("%q", st.Spec)
		p.Info["runs"] = strconv.FormatInt(st.Seq, 10)
		if !st.Last.IsZero() {
			p.Info["last tick"] = st.Last.UTC().Format(time.RFC3339Nano)
		}
		p.Info["state"] = "active"
		if st.Paused != nil {
			p.Info["state"] = "paused by " + st.Paused.By
		}
		if st.Trigger != nil {
			p.Info["trigger"] = "pending from " + st.Trigger.By
		}
		for reason, n := range st.Skipped {
			p.Info["skipped "+reason] = strconv.FormatInt(n, 10)
		}
	}
	p.Holders = r.part(k, "r")
	p.Waiters = r.part(k, "m")
	return nil
}

// parseRateLimit: "state" holds the limit and the permits reserved per
// epoch (bounded: at most 64 epochs ahead a grid, 8 grids); the
// processes holding permits are r/<id>, each record's n the permits it
// held at its last reservation.
func parseRateLimit(r *reader, p *Primitive, k prim) error {
	p.Holders = r.part(k, "r")
	v, ok := k.single("state")
	if !ok {
		return nil
	}
	var st struct {
		Limit    int64 `json:"limit"`
		Interval int64 `json:"interval_ns"`
		Burst    int64 `json:"burst"`
		Grids    []struct {
			T0    int64   `json:"t0"`
			Epoch int64   `json:"epoch_ns"`
			Base  int64   `json:"base"`
			Taken []int64 `json:"taken"`
		} `json:"grids"`
	}
	if json.Unmarshal([]byte(v), &st) != nil {
		p.Info["state"] = "unreadable"
		return nil
	}
	p.Info["limit"] = fmt.Sprintf("%d/%v", st.Limit, time.Duration(st.Interval))
	p.Info["burst"] = strconv.FormatInt(st.Burst, 10)
	// Reserved: the permits of the epochs not yet over.
	now, reserved := time.Now().UnixNano(), int64(0)
	for _, g := range st.Grids {
		for i, n := range g.Taken {
			if g.Epoch > 0 && g.T0+(g.Base+int64(i)+1)*g.Epoch > now {
				reserved += n
			}
		}
	}
	p.Info["reserved"] = strconv.FormatInt(reserved, 10)
	return nil
}

// parseGroup: members m/<escaped id>, each record with the member's
// metadata and weight (N, 1 when absent); a member's id is its key's
// name. A group's keys are bounded: each member's metadata is at most
// group.MaxMetaBytes.
func parseGroup(r *reader, p *Primitive, k prim) error {
	p.Holders = r.part(k, "m")
	for i := range p.Holders {
		m := &p.Holders[i]
		if id, err := keys.Unescape(strings.TrimPrefix(m.Key, k.sp.Part("m"))); err == nil {
			m.Value = id
		}
		m.Weight = 0 // shown as the member's id, not as permits
	}
	p.Info["members"] = strconv.Itoa(len(p.Holders))
	return nil
}

// parseShard: "spec" names the group and the shards (a count, or the
// names); participants p/<id> hold a running member's id; owners
// o/<escaped shard>, one per owned shard, hold the owning member's id,
// and their create revisions are the ownerships' fencing tokens. A map
// has at most shard.MaxShards owner keys, so its keys are bounded.
func parseShard(r *reader, p *Primitive, k prim) error {
	var spec struct {
		Group string   `json:"group"`
		Count int      `json:"count"`
		Names []string `json:"names"`
	}
	if v, ok := k.single("spec"); ok && json.Unmarshal([]byte(v), &spec) == nil {
		p.Info["group"] = spec.Group
		p.Info["shards"] = strconv.Itoa(max(spec.Count, len(spec.Names)))
	}
	p.Holders = r.part(k, "o")
	owned := map[string]int{}
	for _, m := range p.Holders {
		owned[m.Value]++
	}
	parts := r.part(k, "p")
	running := make([]string, 0, len(parts))
	for _, m := range parts {
		running = append(running, fmt.Sprintf("%s:%d", m.Value, owned[m.Value]))
	}
	sort.Strings(running)
	p.Info["owned"] = strconv.Itoa(len(p.Holders))
	p.Info["members"] = strings.Join(running, ",")
	if len(running) == 0 {
		p.Info["members"] = "none"
	}
	return nil
}
