package lock

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/wait"
)

// errReleased ends the holds of a lock its owner let go.
var errReleased = errors.New("lock: released")

// acq is one acquisition: the keys put by one Lock call, all created at
// revision rev (the fencing token), and the watches that say when they
// are lost. A new Lock makes a new acq, so nothing left running for an
// old one can touch the next.
type acq struct {
	c     *core
	mode  mode
	keys  []string
	rev   int64
	start time.Time
	done  chan struct{}

	mu         sync.Mutex
	holds      []*wait.Hold // started by watch
	held       bool         // acquired: a loss now is worth reporting
	finished   bool         // released or given up by its owner
	cause      error        // why done closed
	reported   bool         // Released metric recorded
	unlockSent bool         // an Unlock may already have deleted the keys
}

// watch starts one Hold per key, once, and returns them. The uncontended
// path never calls it unless Done is asked for, so Lock+Unlock stays at
// one Txn and one DeleteRange.
func (a *acq) watch() []*wait.Hold {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.holds != nil || a.finished {
		return a.holds
	}
	cli := a.c.s.Client()
	for _, k := range a.keys {
		h := wait.NewHold(cli, k, a.rev, a.c.s)
		a.holds = append(a.holds, h)
		go func() {
			<-h.Done()
			a.end(h.Err())
		}()
	}
	return a.holds
}

// end closes done once. A hold that ends while the lock is held, and not
// because its owner let it go, is a loss: log it and count it.
func (a *acq) end(cause error) {
	a.mu.Lock()
	if a.cause != nil {
		a.mu.Unlock()
		return
	}
	if a.unlockSent {
		// Our own Unlock deleted the key: its watch may report that
		// before release marks the acquisition finished. Unlock itself
		// decides whether anything was lost.
		cause = errReleased
	}
	a.cause = cause
	close(a.done)
	lost := a.held && !a.finished && cause != errReleased
	report := lost && !a.reported
	if report {
		a.reported = true
	}
	a.mu.Unlock()
	if lost {
		c := a.c
		c.s.Logger().Warn("coord lock lost", "lock", c.label, "token", a.rev, "cause", cause)
	}
	if report {
		for _, n := range a.c.names {
			a.c.s.Metrics().Released(a.c.kind, n, time.Since(a.start), true)
		}
	}
}

// finish marks the acquisition as let go by its owner, stops its watches
// and closes done.
func (a *acq) finish() {
	a.mu.Lock()
	a.finished = true
	holds := a.holds
	a.mu.Unlock()
	for _, h := range holds {
		h.Release(errReleased)
	}
	a.end(errReleased)
}

// report says whether the caller should record the Released metric, once.
func (a *acq) report() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := !a.reported
	a.reported = true
	return r
}

// lossCause explains a loss: what the watches saw, else the session's end,
// else that the key was deleted.
func (a *acq) lossCause() error {
	a.mu.Lock()
	cause := a.cause
	a.mu.Unlock()
	if cause != nil && cause != errReleased {
		return cause
	}
	if err := a.c.s.Err(); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", wait.ErrKeyGone, a.keys[0])
}

// lost returns the loss error once done closed for a reason other than
// release, or nil.
func (a *acq) lost() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cause == nil || a.cause == errReleased || !a.held {
		return nil
	}
	return fmt.Errorf("%s: %w: %w", a.c.label, ErrLost, a.cause)
}
