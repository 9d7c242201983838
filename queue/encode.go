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
//	r/<prio>-<id>                 a ready message (no lease)
//	t/<due>-<prio>-<id>           a delayed or nacked message (no lease)
//	c/r/<prio>-<id>, c/t/...      the claim on a message, on the consumer's lease
//	a/<id>                        attempt counter: its Version is the number of claims
//	d/<id>                        a dead letter
//	i/<escaped key>               idempotency record, value = message id
//
// <prio> and <due> are 16 hex digits, so key order is priority order, and
// <id> starts with the enqueue time in 16 hex digits, so key order within
// a priority is FIFO. A claim key mirrors its message key, so claims sort
// exactly like the messages they hide: the first K claims of a part are
// all the claims on the first K messages of that part.
const (
	partReady   = "r"
	partTimed   = "t"
	partClaim   = "c"
	partAttempt = "a"
	partDead    = "d"
	partIdem    = "i"
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

// record is what a message key holds besides the payload. Payloads are
// stored raw after a small binary header (no base64), so a payload just
// under the request limit still fits.
type record struct {
	prio     int
	enqueued int64 // unix nanoseconds
	attempts int   // only meaningful for dead letters: claims made
	idem     string
	payload  []byte
}

const recordVersion = 1

var errBadRecord = errors.New("queue: malformed message record")

func (r record) encode() []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(r.idem)+len(r.payload))
	b = append(b, recordVersion)
	b = binary.AppendVarint(b, int64(r.prio))
	b = binary.AppendVarint(b, r.enqueued)
	b = binary.AppendUvarint(b, uint64(r.attempts))
	b = binary.AppendUvarint(b, uint64(len(r.idem)))
	b = append(b, r.idem...)
	return append(b, r.payload...)
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) == 0 || b[0] != recordVersion {
		return r, errBadRecord
	}
	b = b[1:]
	prio, n := binary.Varint(b)
	if n <= 0 {
		return r, errBadRecord
	}
	b = b[n:]
	enq, n := binary.Varint(b)
	if n <= 0 {
		return r, errBadRecord
	}
	b = b[n:]
	att, n := binary.Uvarint(b)
	if n <= 0 {
		return r, errBadRecord
	}
	b = b[n:]
	il, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < il {
		return r, errBadRecord
	}
	b = b[n:]
	r.prio, r.enqueued, r.attempts = int(prio), enq, int(att)
	r.idem = string(b[:il])
	r.payload = b[il:]
	return r, nil
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns) }
