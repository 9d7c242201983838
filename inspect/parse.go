package inspect

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
)

// parsers read each kind's keys and values. They are the only code here
// that knows a primitive's parts and value formats, one function a kind,
// so a change of layout or of a value format is made in one place.
var parsers = map[string]func(*reader, *Primitive, prim){
	keys.KindLock:      parseLock,
	keys.KindRWLock:    parseRWLock,
	keys.KindElection:  parseElection,
	keys.KindSemaphore: parseSemaphore,
	keys.KindBarrier:   parseBarrier,
	keys.KindDouble:    parseDoubleBarrier,
	keys.KindLatch:     parseLatch,
	keys.KindQueue:     parseQueue,
}

// lockSince reads a lock key's value: the time the lock was asked for.
func lockSince(ms []Member) {
	for i := range ms {
		if t, err := time.Parse(time.RFC3339Nano, ms[i].Value); err == nil {
			ms[i].Since, ms[i].Value = t, ""
		}
	}
}

// parseLock: the line is w/<id>, first in line holds.
func parseLock(r *reader, p *Primitive, k prim) {
	line := r.part(k, "w")
	lockSince(line)
	if len(line) > 0 {
		p.Holders, p.Waiters = line[:1], line[1:]
	}
}

// parseRWLock: readers r/<id> and writers w/<id> share one line ordered by
// revision; readers before the first writer share the lock, a writer holds
// only when it is first.
func parseRWLock(r *reader, p *Primitive, k prim) {
	line := append(r.part(k, "r"), r.part(k, "w")...)
	sort.Slice(line, func(i, j int) bool { return line[i].Token < line[j].Token })
	lockSince(line)
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
}

// parseElection: candidates c/<id> with their value; the first leads.
func parseElection(r *reader, p *Primitive, k prim) {
	line := r.part(k, "c")
	if len(line) > 0 {
		p.Holders, p.Waiters = line[:1], line[1:]
	}
}

// parseSemaphore: "capacity" holds the capacity (first field); requests
// q/<id> hold their weight (first field). Strict FIFO: the first request
// that does not fit blocks every later one.
func parseSemaphore(r *reader, p *Primitive, k prim) {
	capacity := int64(0)
	if v, ok := k.single("capacity"); ok {
		if f := strings.Fields(v); len(f) > 0 {
			capacity, _ = strconv.ParseInt(f[0], 10, 64)
		}
		p.Info["capacity"] = strconv.FormatInt(capacity, 10)
	}
	line := r.part(k, "q")
	for i, m := range line {
		w, err := strconv.ParseInt(strings.Fields(m.Value + " 1")[0], 10, 64)
		if err != nil || w < 1 {
			w = 1
		}
		line[i].Weight, line[i].Value = w, ""
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
}

// parseBarrier: holds h/<id> keep the gate shut; "released" marks a
// release.
func parseBarrier(r *reader, p *Primitive, k prim) {
	p.Holders = r.part(k, "h")
	if _, ok := k.single("released"); ok {
		p.Info["released"] = "yes"
	}
	if len(p.Holders) > 0 {
		p.Info["state"] = "held"
	} else {
		p.Info["state"] = "open"
	}
}

// parseDoubleBarrier: participants p/<id>; "count" and "round" as stored.
func parseDoubleBarrier(r *reader, p *Primitive, k prim) {
	p.Holders = r.part(k, "p")
	for _, leaf := range []string{"count", "round"} {
		if v, ok := k.single(leaf); ok {
			p.Info[leaf] = v
		}
	}
}

// parseLatch: "count" as stored, one d/<id> per count-down.
func parseLatch(r *reader, p *Primitive, k prim) {
	if v, ok := k.single("count"); ok {
		p.Info["count"] = v
	}
	p.Info["counted down"] = strconv.Itoa(len(r.part(k, "d")))
}

// parseQueue: the counts come from the queue package's own Stats, which
// knows its layout; claims c/<id> are the holders.
func parseQueue(r *reader, p *Primitive, k prim) {
	q := queue.New(r.cli, k.sp.Name(), queue.WithPrefix(r.root))
	if st, err := q.Stats(r.ctx); err == nil {
		p.Info["ready"] = strconv.FormatInt(st.Ready, 10)
		p.Info["claimed"] = strconv.FormatInt(st.Claimed, 10)
		p.Info["delayed"] = strconv.FormatInt(st.Delayed, 10)
		p.Info["dead"] = strconv.FormatInt(st.Dead, 10)
	}
	p.Holders = r.part(k, "c")
}
