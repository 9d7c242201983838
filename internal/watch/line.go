package watch

import (
	"bytes"
	"slices"

	"github.com/coord-go/coord/internal/keys"
)

// Entry is one key of a mirrored range, as of the mirror's revision.
type Entry struct {
	Key       string
	Part      string // the first segment after the range's base ("w", "q"), "" for a single key
	CreateRev int64
	ModRev    int64
	Version   int64
	Lease     int64
	Value     []byte

	weight int64 // the record's semaphore weight, 1 when it has none
	idx    int   // position in its line
	gone   bool
	rec    *keys.Record // decoded on first use
	recErr error
}

// weightOf reads a value's semaphore weight without decoding records that
// carry none (a lock's or a candidate's): every event of a busy line goes
// through here, in every process that follows it.
func weightOf(v []byte) int64 {
	if !bytes.Contains(v, []byte(`"n":`)) {
		return 1
	}
	rec, _ := keys.DecodeRecord(v)
	return rec.Weight()
}

// Record decodes the entry's value, once; a value that is not a coord
// record gives the zero Record and an error. Call it only under the
// mirror's lock (in a Listener or Read), as every Entry use.
func (e *Entry) Record() (keys.Record, error) {
	if e.rec == nil {
		r, err := keys.DecodeRecord(e.Value)
		e.rec, e.recErr = &r, err
	}
	return *e.rec, e.recErr
}

// Weight is the entry's semaphore weight (1 when its record has none).
func (e *Entry) Weight() int64 { return e.weight }

// Line is the keys of one part of a mirrored range in create-revision
// order: the order every coord line is served in. First and Ahead answer
// "who is first" and "how much is ahead of me" in O(1) and O(log n), so
// neither a handoff nor a grant costs anything that grows with the line.
type Line struct {
	ents []*Entry // ascending CreateRev; deleted ones are marked gone
	live int
	head int     // index of the first live entry
	bit  []int64 // Fenwick tree of weights over ents
	cnt  []int64 // Fenwick tree of live counts over ents

	rebuilds int // how often the line was sorted and rebuilt (for tests)
}

func newLine() *Line { return &Line{} }

// Len is the number of keys in the line.
func (l *Line) Len() int { return l.live }

// First returns the oldest key of the line, or nil.
func (l *Line) First() *Entry {
	for l.head < len(l.ents) && l.ents[l.head].gone {
		l.head++
	}
	if l.head < len(l.ents) {
		return l.ents[l.head]
	}
	return nil
}

// Ahead returns how many keys of the line were created before rev, and
// their total weight.
func (l *Line) Ahead(rev int64) (n int, weight int64) {
	i := l.search(rev)
	return int(sum(l.cnt, i)), sum(l.bit, i)
}

// Each calls fn for every live key in create-revision order until fn
// returns false.
func (l *Line) Each(fn func(*Entry) bool) {
	for _, e := range l.ents[l.head:] {
		if !e.gone && !fn(e) {
			return
		}
	}
}

// After returns the first live key created at or after rev, or nil.
func (l *Line) After(rev int64) *Entry {
	for _, e := range l.ents[max(l.search(rev), l.head):] {
		if !e.gone {
			return e
		}
	}
	return nil
}

// search is the index of the first entry created at or after rev.
func (l *Line) search(rev int64) int {
	i, _ := slices.BinarySearchFunc(l.ents, rev, func(e *Entry, r int64) int {
		switch {
		case e.CreateRev < r:
			return -1
		case e.CreateRev > r:
			return 1
		}
		return 0
	})
	return i
}

// add appends an entry created after every other. A key can only be
// created at a revision newer than all existing keys, so after a load the
// line only ever grows at its end.
func (l *Line) add(e *Entry) {
	if n := len(l.ents); n > 0 && l.ents[n-1].CreateRev > e.CreateRev {
		// Out of order: only a load can produce this; rebuild.
		l.ents = append(l.ents, e)
		l.rebuild()
		return
	}
	e.idx = len(l.ents)
	l.ents = append(l.ents, e)
	l.bit, l.cnt = grow(l.bit, e.weight), grow(l.cnt, 1)
	l.live++
}

// update records a new value of a live entry (its weight may change).
func (l *Line) update(e *Entry, old int64) {
	if d := e.weight - old; d != 0 {
		add(l.bit, e.idx, d)
	}
}

func (l *Line) remove(e *Entry) {
	e.gone = true
	l.live--
	add(l.bit, e.idx, -e.weight)
	add(l.cnt, e.idx, -1)
	if len(l.ents) > 64 && l.live*2 < len(l.ents) {
		l.rebuild()
	}
}

// rebuild drops gone entries, sorts, and rebuilds the tree.
func (l *Line) rebuild() {
	l.rebuilds++
	live := l.ents[:0]
	for _, e := range l.ents {
		if !e.gone {
			live = append(live, e)
		}
	}
	clear(l.ents[len(live):])
	slices.SortFunc(live, func(a, b *Entry) int { return int(a.CreateRev - b.CreateRev) })
	l.ents, l.live, l.head = live, len(live), 0
	l.bit, l.cnt = make([]int64, len(live)), make([]int64, len(live))
	for i, e := range live {
		e.idx = i
		add(l.bit, i, e.weight)
		add(l.cnt, i, 1)
	}
}

// grow appends a position holding v to a Fenwick tree. The new node n
// (1-based) covers positions (n-lowbit(n), n], so it starts as the sum of
// the ones already there, not as zero.
func grow(t []int64, v int64) []int64 {
	n := len(t) + 1
	node := sum(t, n-1) - sum(t, n-(n&-n)) + v
	return append(t, node)
}

// add adds d at position i of a Fenwick tree.
func add(t []int64, i int, d int64) {
	for i++; i <= len(t); i += i & -i {
		t[i-1] += d
	}
}

// sum is the total of positions [0, i) of a Fenwick tree.
func sum(t []int64, i int) int64 {
	var s int64
	for ; i > 0; i -= i & -i {
		s += t[i-1]
	}
	return s
}
