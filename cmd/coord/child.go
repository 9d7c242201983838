package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// defaultGrace is how long a child gets between SIGTERM and SIGKILL once
// what it ran under is lost.
const defaultGrace = 10 * time.Second

// supervisor owns coord's termination signals for a command's whole life.
// While coord waits (for a lock, a permit, a leadership), a signal cancels
// the wait, so the waiter deletes its key and exits. While a child runs, the
// signal is forwarded to the child's process group instead: the child runs
// in a group of its own so that coord, not the terminal, decides when it is
// stopped, and so that a loss stops the child's own children too.
type supervisor struct {
	sigs   chan os.Signal
	done   chan struct{}
	cancel context.CancelFunc

	mu   sync.Mutex
	pgid int       // the running child's process group, or 0
	got  os.Signal // the first signal received while waiting
}

func newSupervisor() (*supervisor, context.Context) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &supervisor{sigs: make(chan os.Signal, 4), done: make(chan struct{}), cancel: cancel}
	signal.Notify(s.sigs, forwarded...)
	go s.loop()
	return s, ctx
}

func (s *supervisor) loop() {
	for {
		select {
		case <-s.done:
			return
		case sig := <-s.sigs:
			s.mu.Lock()
			if s.pgid != 0 {
				signalGroup(s.pgid, sig)
			} else if s.got == nil {
				s.got = sig
				s.cancel()
			}
			s.mu.Unlock()
		}
	}
}

// interrupted returns the exit code for a wait ended by a signal, or -1.
func (s *supervisor) interrupted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		return -1
	}
	return 128 + sigNum(s.got)
}

// stop restores the default signal handling.
func (s *supervisor) stop() {
	signal.Stop(s.sigs)
	close(s.done)
	s.cancel()
}

// child describes one run of the user's command.
type child struct {
	argv   []string
	env    []string // added to coord's environment
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	lost   <-chan struct{} // closed when what the child runs under is lost
	asked  <-chan struct{} // closed when the child should stop so coord can hand over (nil: never)
	what   string          // "lock \"backup\"", for messages
	grace  time.Duration
}

// result is how a child ended.
type result struct {
	code  int  // its exit code, 128+signal if a signal ended it
	lost  bool // it was stopped because what it ran under was lost
	asked bool // it was stopped so that coord could hand over
}

// run starts the child and waits for it. When c.lost closes first, it sends
// SIGTERM to the child's process group, and SIGKILL after the grace period.
// Whatever the child left running in its group is killed when it exits,
// and the whole group is killed if coord itself dies (see group).
func (s *supervisor) run(c child) (result, error) {
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdin, c.stdout, c.stderr
	g := newGroup(c.stderr)
	defer g.end()
	s.mu.Lock()
	if s.got != nil {
		// A signal came in the moment before the start: do not start at all.
		s.mu.Unlock()
		return result{code: s.interrupted()}, nil
	}
	pgid, err := g.start(cmd)
	if err != nil {
		s.mu.Unlock()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return result{code: 127}, fmt.Errorf("run %s: %w", c.argv[0], err)
		}
		return result{code: 126}, fmt.Errorf("run %s: %w", c.argv[0], err)
	}
	s.pgid = pgid
	s.mu.Unlock()

	exited := make(chan struct{})
	var lost, asked bool
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-exited:
			return
		case <-c.lost:
			lost = true
			fmt.Fprintf(c.stderr, "coord: %s lost; sending SIGTERM to %s (SIGKILL in %s)\n", c.what, quoteCmd(c.argv), c.grace)
		case <-c.asked:
			asked = true
			fmt.Fprintf(c.stderr, "coord: %s: asked to hand over; sending SIGTERM to %s (SIGKILL in %s)\n", c.what, quoteCmd(c.argv), c.grace)
		}
		signalGroup(pgid, syscall.SIGTERM)
		t := time.NewTimer(c.grace)
		defer t.Stop()
		select {
		case <-exited:
		case <-t.C:
			fmt.Fprintf(c.stderr, "coord: %s still running after %s; sending SIGKILL\n", quoteCmd(c.argv), c.grace)
			signalGroup(pgid, syscall.SIGKILL)
		}
	})
	err = cmd.Wait()
	close(exited)
	wg.Wait()
	s.mu.Lock()
	s.pgid = 0
	s.mu.Unlock()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return result{code: 1, lost: lost, asked: asked}, fmt.Errorf("wait for %s: %w", c.argv[0], err)
	}
	return result{code: exitCode(cmd.ProcessState), lost: lost, asked: asked}, nil
}
