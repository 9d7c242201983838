package faulttest

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// TestPorcupineModels checks the two models on small hand-made histories,
// legal and not, so that a model that accepts everything cannot pass the
// suite's runs unnoticed.
func TestPorcupineModels(t *testing.T) {
	op := func(client int, in any, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Return: ret}
	}
	acq := func(tok int64) regInput { return regInput{key: "lock/a", op: "acquire", token: tok} }
	wr := func(tok int64, ok bool) regInput { return regInput{key: "lock/a", op: "write", token: tok, ok: ok} }
	for _, c := range []struct {
		name string
		h    []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"handoff", []porcupine.Operation{op(0, acq(5), 0, 1), op(0, wr(5, true), 2, 3), op(1, acq(9), 0, 5), op(1, wr(9, true), 6, 7), op(0, wr(5, false), 8, 9)}, porcupine.Ok},
		{"concurrent write and successor", []porcupine.Operation{op(0, acq(5), 0, 1), op(1, acq(9), 0, 5), op(0, wr(5, true), 2, 6)}, porcupine.Ok},
		{"stale write accepted", []porcupine.Operation{op(0, acq(5), 0, 1), op(1, acq(9), 0, 5), op(0, wr(5, true), 6, 7)}, porcupine.Illegal},
		{"token not above the last", []porcupine.Operation{op(0, acq(9), 0, 1), op(1, acq(5), 2, 3)}, porcupine.Illegal},
		{"other key is its own register", []porcupine.Operation{op(0, acq(9), 0, 1), op(1, regInput{key: "elect/b", op: "acquire", token: 5}, 2, 3)}, porcupine.Ok},
	} {
		if got := porcupine.CheckOperations(registerModel, c.h); (got && c.want != porcupine.Ok) || (!got && c.want == porcupine.Ok) {
			t.Errorf("register %s: linearizable=%v, want %s", c.name, got, c.want)
		}
	}
	q := func(op string, tok int64, ok bool) qInput { return qInput{id: "m", op: op, token: tok, ok: ok} }
	for _, c := range []struct {
		name string
		h    []porcupine.Operation
		want bool
	}{
		{"delivered, handled, acked", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 2), op(1, q("deliver", 10, false), 1, 1), op(1, q("handled", 10, true), 3, 3), op(1, q("ack", 10, false), 3, 4), op(0, q("end", 0, false), 9, 9)}, true},
		{"redelivered after a failed handler", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(1, q("deliver", 10, false), 2, 2), op(1, q("handled", 10, false), 3, 3), op(2, q("deliver", 12, false), 4, 4), op(2, q("handled", 12, true), 5, 5), op(2, q("ack", 12, false), 5, 6), op(0, q("end", 0, false), 9, 9)}, true},
		{"acked by a claim given back", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(1, q("deliver", 10, false), 2, 2), op(1, q("handled", 10, true), 5, 5), op(2, q("deliver", 12, false), 4, 4), op(1, q("ack", 10, false), 6, 7)}, false},
		{"acked without a handler that returned nil", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(1, q("deliver", 10, false), 2, 2), op(1, q("handled", 10, false), 3, 3), op(1, q("ack", 10, false), 4, 5)}, false},
		{"delivered after its ack", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(1, q("deliver", 10, false), 2, 2), op(1, q("handled", 10, true), 3, 3), op(1, q("ack", 10, false), 3, 4), op(2, q("deliver", 12, false), 6, 6)}, false},
		{"acked twice", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(1, q("deliver", 10, false), 2, 2), op(1, q("handled", 10, true), 3, 3), op(1, q("ack", 10, false), 3, 4), op(1, q("ack", 10, false), 5, 6)}, false},
		{"delivered, never enqueued", []porcupine.Operation{op(1, q("deliver", 10, false), 2, 2)}, false},
		{"enqueued, never acked, gone at the end", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(0, q("end", 0, false), 9, 9)}, false},
		{"acked and stored again at the end", []porcupine.Operation{op(0, q("enqueue", 0, false), 0, 1), op(1, q("deliver", 10, false), 2, 2), op(1, q("handled", 10, true), 3, 3), op(1, q("ack", 10, false), 3, 4), op(0, q("end", 0, true), 9, 9)}, false},
		{"an ambiguous enqueue that never landed", []porcupine.Operation{op(0, q("enqueue?", 0, false), 0, 1), op(0, q("end", 0, false), 9, 9)}, true},
	} {
		if got := porcupine.CheckOperations(queueModel, c.h); got != c.want {
			t.Errorf("queue %s: linearizable=%v, want %v", c.name, got, c.want)
		}
	}
}
