package watch

import (
	"math/rand/v2"
	"testing"
)

// TestLineAgreesWithASlowCount checks First and Ahead against a plain
// count after every add, update and removal, in random order.
func TestLineAgreesWithASlowCount(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	l := newLine()
	var all []*Entry
	rev := int64(0)
	for step := 0; step < 5000; step++ {
		switch op := r.IntN(10); {
		case op < 5 || len(all) == 0:
			rev += 1 + int64(r.IntN(3))
			e := &Entry{Key: "k", CreateRev: rev, weight: int64(1 + r.IntN(5))}
			l.add(e)
			all = append(all, e)
		case op < 8:
			i := r.IntN(len(all))
			l.remove(all[i])
			all = append(all[:i], all[i+1:]...)
		default:
			e := all[r.IntN(len(all))]
			old := e.weight
			e.weight = int64(1 + r.IntN(5))
			l.update(e, old)
		}
		q := int64(r.IntN(int(rev) + 2))
		var wantN int
		var wantW int64
		var first *Entry
		for _, e := range all {
			if first == nil || e.CreateRev < first.CreateRev {
				first = e
			}
			if e.CreateRev < q {
				wantN++
				wantW += e.weight
			}
		}
		if n, w := l.Ahead(q); n != wantN || w != wantW {
			t.Fatalf("step %d: Ahead(%d) = %d, %d; want %d, %d", step, q, n, w, wantN, wantW)
		}
		if got := l.First(); got != first {
			t.Fatalf("step %d: First = %v, want %v", step, got, first)
		}
		if l.Len() != len(all) {
			t.Fatalf("step %d: Len = %d, want %d", step, l.Len(), len(all))
		}
	}
}
