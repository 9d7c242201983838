package queue

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClaimTimeout is the cause of a handler's cancelled ctx, and what
// Extend returns, when a claim outlived Consume's WithClaimTimeout: the
// message was given back for another attempt.
var ErrClaimTimeout = errors.New("queue: claim timed out")

// ReasonTimeout: its last allowed attempt outlived the claim timeout.
const ReasonTimeout = "claim timeout"

// WithClaimTimeout bounds each handler's hold on its message: a handler
// still running d after its claim (and not extended with Message.Extend)
// has its ctx cancelled with ErrClaimTimeout, and its message is nacked
// at once as a failed attempt (or dead-lettered with ReasonTimeout at its
// last), so a stuck handler does not keep a message from the queue for as
// long as its process lives. Default 0: no timeout, the claim lasts as
// long as the session. A negative d is ErrInvalid.
//
// The timeout is kept by the consuming process, with no request to etcd
// until it fires; a process that stops altogether (crashed, frozen, cut
// off) is covered by its session instead, whose end frees its claims. A
// handler that ignores its ctx runs on, holding its worker, but can no
// longer settle the message (ErrFinished).
func WithClaimTimeout(d time.Duration) ConsumeOption {
	return func(o *consumeOptions) {
		if d < 0 {
			o.err = fmt.Errorf("%w: claim timeout %v is negative", ErrInvalid, d)
		}
		o.claimTimeout = d
	}
}

// deadline is the claim timeout of one message under Consume.
type deadline struct {
	mu      sync.Mutex
	t       *time.Timer
	fired   bool
	stopped bool
}

// arm starts m's claim timeout: expire runs once if it passes.
func (m *Message) arm(d time.Duration, expire func()) {
	dl := &deadline{}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dl.t = time.AfterFunc(d, func() {
		dl.mu.Lock()
		if dl.stopped {
			dl.mu.Unlock()
			return
		}
		dl.fired = true
		dl.mu.Unlock()
		expire()
	})
	m.mu.Lock()
	m.dl = dl
	m.mu.Unlock()
}

// disarm stops m's claim timeout once its handler returned.
func (m *Message) disarm() {
	m.mu.Lock()
	dl := m.dl
	m.mu.Unlock()
	if dl == nil {
		return
	}
	dl.mu.Lock()
	dl.stopped = true
	dl.t.Stop()
	dl.mu.Unlock()
}

// Extend moves the claim's timeout to d from now, for a handler of a long
// job under Consume with WithClaimTimeout. It costs no request. It
// returns ErrInvalid for d ≤ 0 or a message without a claim timeout (one
// from Claim, or from Consume without the option), and an error wrapping
// ErrClaimTimeout once the timeout passed (the message went back to the
// queue), or ErrFinished once the message was settled.
func (m *Message) Extend(d time.Duration) error {
	m.mu.Lock()
	dl, settled := m.dl, m.settled
	m.mu.Unlock()
	switch {
	case d <= 0:
		return fmt.Errorf("queue %q: %w: extension of %v", m.q.sp.Name(), ErrInvalid, d)
	case dl == nil:
		return fmt.Errorf("queue %q: %w: message %s has no claim timeout to extend (see WithClaimTimeout)", m.q.sp.Name(), ErrInvalid, m.ID)
	}
	dl.mu.Lock()
	defer dl.mu.Unlock()
	switch {
	case dl.fired:
		return fmt.Errorf("queue %q: message %s: %w", m.q.sp.Name(), m.ID, ErrClaimTimeout)
	case settled || dl.stopped:
		return fmt.Errorf("queue %q: message %s: %w", m.q.sp.Name(), m.ID, ErrFinished)
	}
	dl.t.Reset(d)
	return nil
}
