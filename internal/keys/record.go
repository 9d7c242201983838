package keys

import (
	"encoding/json"
	"fmt"
	"time"
)

// Record is the value of every key a holder or waiter owns: a lock's
// place in line, a candidate, a semaphore request, a double-barrier
// participant, a queue claim. One format for every kind is what lets the
// waiting core read any line (a semaphore's weights, an election's
// priorities) and inspect show any holder's age, without a decoder per
// primitive. It is JSON so that `etcdctl get --prefix coord/` stays
// readable:
//
//	{"since":"2026-12-01T19:02:22.123Z","n":2}
//	{"since":"2026-12-01T19:02:22.123Z","value":"10.0.0.7:8080","prio":5}
//
// Fields that are zero are left out.
type Record struct {
	// Since is when the owner asked (the request, not the grant: a grant
	// costs no write, so its time is not recorded).
	Since time.Time `json:"since,omitzero"`
	// N is a semaphore request's weight (0 means 1 for a semaphore).
	N int64 `json:"n,omitempty"`
	// Value is an election candidate's value, or a claim's message id.
	Value string `json:"value,omitempty"`
	// Prio is an election candidate's priority.
	Prio int `json:"prio,omitempty"`
	// Meta is small metadata a candidate or member publishes.
	Meta map[string]string `json:"meta,omitempty"`
	// Observer marks an election candidate that follows and is listed but
	// never leads.
	Observer bool `json:"observer,omitempty"`
	// Hold is the unique id of a hold whose key is named by its primitive
	// (a group member's id, a shard's owner key; see hold.Config.Named),
	// so that the hold can tell its own key from another holder's of the
	// same name.
	Hold string `json:"hold,omitempty"`
}

// Encode returns the record as stored.
func (r Record) Encode() string {
	r.Since = r.Since.UTC()
	b, err := json.Marshal(r)
	if err != nil {
		// Only unsupported types fail to marshal, and Record has none.
		panic(fmt.Sprintf("keys: encode record: %v", err))
	}
	return string(b)
}

// DecodeRecord parses a stored record. A value that is not one (a key
// written by hand, or by an older coord) decodes as the zero Record with
// an error, so readers can treat it conservatively (a weight of 1, say).
func DecodeRecord(v []byte) (Record, error) {
	var r Record
	if len(v) == 0 || v[0] != '{' {
		return Record{}, fmt.Errorf("keys: %q is not a coord record", truncate(v))
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("keys: record %q: %w", truncate(v), err)
	}
	return r, nil
}

// Weight is the record's semaphore weight: N, or 1 when N is not a
// positive number (a record we cannot read may delay others, never let
// too many in).
func (r Record) Weight() int64 {
	if r.N < 1 {
		return 1
	}
	return r.N
}

func truncate(v []byte) string {
	if len(v) > 64 {
		return string(v[:64]) + "..."
	}
	return string(v)
}
