package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Key layout inside the queue's space (every key through keys.Space):
//
//	r/<prio>-<id>             a ready message's index entry (small value: its record, no payload)
//	t/<due>-<prio>-<id>       a delayed or nacked message's index entry
//	f/<id>                    a claimed message, in flight: where it came from, its record, its claim key
//	c/<id>/<claim id>         the claim itself, on the consumer's session lease (one key per claim)
//	d/<id>                    a dead letter: its record, with why it died
//	i/<escaped key>           idempotency record, value = message id
//	u/<escaped key>           unique-job record, value = message id (on a lease for UniqueFor)
//	v/<id>                    the payload, written once by Enqueue, deleted by Ack or Discard
//
// <prio> and <due> are 16 hex digits, so key order is priority order, and
// <id> starts with the enqueue time in 16 hex digits, so key order within
// a priority is FIFO.
//
// Why this shape: a Claim moves a message's small index entry out of the
// ready range (r/ or t/ to f/), so the head of the ready range is always
// claimable and a Claim reads only its first few entries, however many
// messages are in flight; and payloads live apart (v/), so no read of the
// index, no compare and no watch ever loads a payload it does not return.
// The claim key is unique to each claim, so a claim's cleanup can never
// delete another claim of the same message, even on a shared session. A
// claim whose consumer dies leaves its f/ entry behind; the next consumer
// to notice (through its feed, or before it goes idle) puts it back where
// it came from.
const (
	partReady    = "r"
	partTimed    = "t"
	partInflight = "f"
	partClaim    = "c"
	partDead     = "d"
	partIdem     = "i"
	partUnique   = "u"
	partPayload  = "v"
	partFloor    = "floor" // the ranges' floors (see floors)
)

// encodePriority maps p to 16 hex digits that sort like the signed ints,
// negatives first.
func encodePriority(p int) string {
	return fmt.Sprintf("%016x", uint64(int64(p))^(1<<63))
}

func decodePriority(s string) (int, error) {
	u, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 {
		return 0, fmt.Errorf("bad priority %q", s)
	}
	return int(int64(u ^ (1 << 63))), nil
}

func encodeTime(t int64) string { return fmt.Sprintf("%016x", uint64(t)) }

func decodeTime(s string) (int64, error) {
	u, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return int64(u), nil
}

// order is where a message stands in line: lower priority first, then
// the time it became ready, then its id.
type order struct {
	prio  int
	ready int64
	id    string
}

func (a order) less(b order) bool {
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	if a.ready != b.ready {
		return a.ready < b.ready
	}
	return a.id < b.id
}

// parseReady parses "<prio>-<id>" (the id is "<time>-<random>").
func parseReady(suffix string) (order, error) {
	prio, id, ok := strings.Cut(suffix, "-")
	if !ok {
		return order{}, fmt.Errorf("bad ready key %q", suffix)
	}
	p, err := decodePriority(prio)
	if err != nil {
		return order{}, err
	}
	ts, _, ok := strings.Cut(id, "-")
	if !ok {
		return order{}, fmt.Errorf("bad message id %q", id)
	}
	t, err := decodeTime(ts)
	if err != nil {
		return order{}, err
	}
	return order{prio: p, ready: t, id: id}, nil
}

// parseTimed parses "<due>-<prio>-<id>".
func parseTimed(suffix string) (order, error) {
	due, rest, ok := strings.Cut(suffix, "-")
	if !ok {
		return order{}, fmt.Errorf("bad delayed key %q", suffix)
	}
	t, err := decodeTime(due)
	if err != nil {
		return order{}, err
	}
	o, err := parseReady(rest)
	if err != nil {
		return order{}, err
	}
	o.ready = t
	return o, nil
}

// maxTimes is how many claim times a record keeps, newest last.
const maxTimes = 16

// record is what a message's index entry holds: everything but the
// payload, small enough to read and watch freely.
type record struct {
	prio     int
	enqueued int64   // unix nanoseconds
	attempts int     // claims made so far
	idem     string  // idempotency key, "" if none
	times    []int64 // unix ns of the latest claims, oldest first
	reason   string  // a dead letter's reason
	lastErr  string  // the error of the last failed attempt, when known
	died     int64   // unix ns when it was dead-lettered
	uniq     string  // the Unique or UniqueFor key, "" if none
	// uniqLeased: the unique key lives on a lease (UniqueFor), and is not
	// freed when the message is settled.
	uniqLeased bool
}

// recordVersion is the version records are written in; version 2 (before
// died) is still read.
const recordVersion = 3

var errBadRecord = errors.New("queue: malformed message record")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (r record) encode() []byte {
	b := make([]byte, 0, 48+len(r.idem)+len(r.reason)+len(r.lastErr)+len(r.uniq)+8*len(r.times))
	b = append(b, recordVersion)
	b = binary.AppendVarint(b, int64(r.prio))
	b = binary.AppendVarint(b, r.enqueued)
	b = binary.AppendUvarint(b, uint64(r.attempts))
	b = appendString(b, r.idem)
	b = appendString(b, r.reason)
	b = appendString(b, r.lastErr)
	b = binary.AppendUvarint(b, uint64(len(r.times)))
	for _, t := range r.times {
		b = binary.AppendVarint(b, t)
	}
	b = binary.AppendVarint(b, r.died)
	b = appendString(b, r.uniq)
	if r.uniqLeased {
		return append(b, 1)
	}
	return append(b, 0)
}

// reader decodes the fields of a record in order, remembering the first
// failure.
type reader struct {
	b   []byte
	bad bool
}

func (d *reader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) string() string {
	l := d.uvarint()
	if d.bad || uint64(len(d.b)) < l {
		d.bad = true
		return ""
	}
	s := string(d.b[:l])
	d.b = d.b[l:]
	return s
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) == 0 || (b[0] != recordVersion && b[0] != 2) {
		return r, errBadRecord
	}
	version := b[0]
	d := reader{b: b[1:]}
	r.prio = int(d.varint())
	r.enqueued = d.varint()
	r.attempts = int(d.uvarint())
	r.idem = d.string()
	r.reason = d.string()
	r.lastErr = d.string()
	n := d.uvarint()
	if n > maxTimes {
		d.bad = true
	}
	for i := uint64(0); i < n && !d.bad; i++ {
		r.times = append(r.times, d.varint())
	}
	if version >= 3 {
		r.died = d.varint()
		r.uniq = d.string()
		if len(d.b) == 0 {
			d.bad = true
		} else {
			r.uniqLeased, d.b = d.b[0] == 1, d.b[1:]
		}
	}
	if d.bad || len(d.b) != 0 {
		return record{}, errBadRecord
	}
	return r, nil
}

// claimed returns the record after one more claim at now.
func (r record) claimed(now int64) record {
	r.attempts++
	r.times = append(append([]int64(nil), r.times...), now)
	if len(r.times) > maxTimes {
		r.times = r.times[len(r.times)-maxTimes:]
	}
	return r
}

// inflight is what f/<id> holds: the index key the message was claimed
// from (so it can be put back), its record as of the claim, and the claim
// key whose existence says the claim is alive.
type inflight struct {
	from  string // the index key the claim took it from
	claim string
	rec   record
}

const inflightVersion = 1

func (f inflight) encode() []byte {
	b := []byte{inflightVersion}
	b = appendString(b, f.from)
	b = appendString(b, f.claim)
	return append(b, f.rec.encode()...)
}

func decodeInflight(b []byte) (inflight, error) {
	if len(b) == 0 || b[0] != inflightVersion {
		return inflight{}, errBadRecord
	}
	d := reader{b: b[1:]}
	f := inflight{from: d.string(), claim: d.string()}
	if d.bad {
		return inflight{}, errBadRecord
	}
	rec, err := decodeRecord(d.b)
	if err != nil {
		return inflight{}, err
	}
	f.rec = rec
	return f, nil
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns) }
