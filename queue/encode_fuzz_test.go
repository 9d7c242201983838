package queue

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"reflect"
	"testing"
)

// Records and index keys are read back from etcd, where anything may have
// written them (a hand-made key, an older or newer coord, a torn value):
// decoding arbitrary bytes must return an error, never panic, and what
// the queue writes must read back as written.

// FuzzDecodeRecord: decodeRecord and decodeInflight never panic, and a
// value either is refused or re-encodes to one that decodes the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(record{}.encode())
	f.Add(record{prio: -3, enqueued: 1 << 60, attempts: 2, idem: "k", times: []int64{1, 2}, uniq: "u", uniqLeased: true}.encode())
	f.Add(record{reason: ReasonMaxAttempts, lastErr: "boom", died: 7}.encode())
	f.Add(inflight{from: "coord/queue/q/r/x", claim: "c", rec: record{attempts: 1}}.encode())
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0})                      // a version-2 record
	f.Add([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0xff, 0x7f}) // too many times
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := decodeRecord(b); err == nil {
			again, err := decodeRecord(r.encode())
			if err != nil || !sameRecord(r, again) {
				t.Fatalf("record %+v from %x re-encodes to %+v (%v)", r, b, again, err)
			}
		}
		if fl, err := decodeInflight(b); err == nil {
			again, err := decodeInflight(fl.encode())
			if err != nil || fl.from != again.from || fl.claim != again.claim || !sameRecord(fl.rec, again.rec) {
				t.Fatalf("in-flight entry %+v from %x re-encodes to %+v (%v)", fl, b, again, err)
			}
		}
	})
}

// FuzzRecordRoundTrip: every record the queue can write decodes to
// itself, and no strict prefix of its encoding decodes at all (a torn
// value is refused, not read as a different record).
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add(0, int64(0), 0, "", "", "", []byte{}, int64(0), "", false, "", "")
	f.Add(-1<<31, int64(1)<<62, 17, "idem", ReasonMaxAttempts, "err", []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, int64(-5), "uniq", true, "coord/queue/q/t/x", "claim")
	f.Fuzz(func(t *testing.T, prio int, enq int64, attempts int, idem, reason, lastErr string, times []byte, died int64, uniq string, leased bool, from, claim string) {
		if attempts < 0 {
			attempts = -attempts // attempts count claims; never negative
		}
		r := record{prio: prio, enqueued: enq, attempts: attempts, idem: idem, reason: reason,
			lastErr: lastErr, times: timesOf(times), died: died, uniq: uniq, uniqLeased: leased}
		b := r.encode()
		got, err := decodeRecord(b)
		if err != nil || !sameRecord(r, got) {
			t.Fatalf("record %+v decodes to %+v (%v)", r, got, err)
		}
		for i := range b {
			if _, err := decodeRecord(b[:i]); err == nil {
				t.Fatalf("the first %d of %d bytes of %+v decode as a record", i, len(b), r)
			}
		}
		fl := inflight{from: from, claim: claim, rec: r}
		gotFl, err := decodeInflight(fl.encode())
		if err != nil || gotFl.from != from || gotFl.claim != claim || !sameRecord(r, gotFl.rec) {
			t.Fatalf("in-flight entry %+v decodes to %+v (%v)", fl, gotFl, err)
		}
		if claimed := r.claimed(enq); len(claimed.times) > maxTimes {
			t.Fatalf("a claim keeps %d times, over %d", len(claimed.times), maxTimes)
		}
	})
}

// timesOf makes up to maxTimes claim times out of fuzz bytes, 8 each: a
// record never holds more (claimed trims them).
func timesOf(b []byte) []int64 {
	var ts []int64
	for len(b) >= 8 && len(ts) < maxTimes {
		ts = append(ts, int64(binary.LittleEndian.Uint64(b)))
		b = b[8:]
	}
	return ts
}

func sameRecord(a, b record) bool {
	if len(a.times) == 0 && len(b.times) == 0 {
		a.times, b.times = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// FuzzIndexKeys: a ready or delayed index key the queue writes parses
// back to its priority, time and id, keys sort in the order they parse
// to, and a suffix from anywhere else is refused or parsed, never a
// panic.
func FuzzIndexKeys(f *testing.F) {
	f.Add(0, int64(0), int64(0), []byte("01234567"), "")
	f.Add(-7, int64(1)<<62, int64(-1), []byte{0xff, 0, 1, 2, 3, 4, 5, 6}, "0000000000000000-x")
	f.Add(1<<40, int64(math.MinInt64), int64(math.MaxInt64), []byte{}, "8000000000000000-0000000000000001-deadbeefdeadbeef")
	f.Fuzz(func(t *testing.T, prio int, enq, due int64, random []byte, arbitrary string) {
		parseReady(arbitrary)
		parseTimed(arbitrary)
		if p, err := decodePriority(encodePriority(prio)); err != nil || p != prio {
			t.Fatalf("priority %d decodes to %d (%v)", prio, p, err)
		}
		if enq < 0 {
			enq = -(enq + 1) // ids start with an enqueue time in Unix ns
		}
		var rnd [8]byte
		copy(rnd[:], random)
		id := encodeTime(enq) + "-" + hex.EncodeToString(rnd[:])
		if !validID(id) {
			t.Fatalf("id %q is not valid", id)
		}
		ready := encodePriority(prio) + "-" + id
		o, err := parseReady(ready)
		if err != nil || o != (order{prio: prio, ready: enq, id: id}) {
			t.Fatalf("ready key %q parses to %+v (%v)", ready, o, err)
		}
		timed := encodeTime(due) + "-" + ready
		o, err = parseTimed(timed)
		if err != nil || o != (order{prio: prio, ready: due, id: id}) {
			t.Fatalf("delayed key %q parses to %+v (%v)", timed, o, err)
		}
		// Key order is priority order, then time: compare with a neighbour.
		other := encodePriority(prio+1) + "-" + id
		if prio+1 > prio && !(ready < other) {
			t.Fatalf("ready key of priority %d sorts after one of %d", prio, prio+1)
		}
	})
}
