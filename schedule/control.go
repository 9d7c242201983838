package schedule

import (
	"context"
	"fmt"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pause pauses the schedule for the whole fleet: from now on its replicas
// skip every tick (counted as SkipPaused) until Resume. A run under way
// goes on. Pausing a paused schedule does nothing. It returns
// ErrNotFound for a schedule that no replica ever ran.
func (s *Schedule) Pause(ctx context.Context) error {
	return s.change(ctx, func(st *state) bool {
		if st.Paused != nil {
			return false
		}
		st.Paused = &mark{By: s.caller(), At: time.Now()}
		return true
	})
}

// Resume ends a pause: the next tick runs as usual. Ticks that came while
// the schedule was paused were skipped by the replicas that saw them, and
// are not caught up. Resuming a schedule that is not paused does
// nothing. It returns ErrNotFound for a schedule that no replica ever
// ran.
func (s *Schedule) Resume(ctx context.Context) error {
	return s.change(ctx, func(st *state) bool {
		if st.Paused == nil {
			return false
		}
		st.Paused = nil
		return true
	})
}

// Trigger asks for one run now, outside the spec, even while paused: the
// first replica to see the request runs it once (Tick.Trigger set,
// Tick.Time the time of the request), as the overlap policy allows. A
// request made while another is pending is the same request. It returns
// ErrNotFound for a schedule that no replica ever ran; a request made
// while no replica runs waits for one.
func (s *Schedule) Trigger(ctx context.Context) error {
	return s.change(ctx, func(st *state) bool {
		if st.Trigger != nil {
			return false
		}
		st.Trigger = &mark{By: s.caller(), At: time.Now()}
		return true
	})
}

// change applies fn to the state in a compare-and-swap loop: fn returns
// false when there is nothing to write.
func (s *Schedule) change(ctx context.Context, fn func(*state) bool) error {
	if s.err != nil {
		return s.err
	}
	for {
		resp, err := s.cli.Get(ctx, s.stateKey)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label, etcderr.Explain(s.cli, err))
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%s: %w", s.label, ErrNotFound)
		}
		kv := resp.Kvs[0]
		st, err := decodeState(kv.Value)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label, err)
		}
		if !fn(&st) {
			return nil
		}
		txn, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(s.stateKey), "=", kv.ModRevision)).
			Then(clientv3.OpPut(s.stateKey, st.encode())).
			Commit()
		if err != nil {
			return fmt.Errorf("%s: %w", s.label, etcderr.Explain(s.cli, err))
		}
		if txn.Succeeded {
			return nil
		}
		// A replica decided a tick in between: apply the change to its state.
	}
}
