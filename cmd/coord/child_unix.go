//go:build unix

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

// forwarded are the signals coord passes on to a running child.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// group is the process group a child runs in, and the reaper that keeps
// it from outliving coord.
//
// The kernel can send a child a signal when its parent dies (Linux's
// PR_SET_PDEATHSIG, see dieWithParent), but only the direct child: a
// shell's own children would be reparented and run on after a kill -9 of
// coord, outside the lock. So coord first starts a reaper, a copy of
// itself, as the leader of a new process group, and starts the child in
// that group. The reaper ignores every catchable signal and blocks reading
// a pipe whose only writer is coord. The pipe reaches end-of-file when
// coord is done with the child or dies in any way, and the reaper then
// SIGKILLs the whole group, itself included. Because the reaper is a
// member until that moment, the group's id cannot be reused by an
// unrelated process while anyone may still signal it.
type group struct {
	pgid   int
	reaper *exec.Cmd
	hangup *os.File // coord's end of the pipe; closing it ends the group
}

// reaperArg is the hidden first argument that runs coord as a reaper.
const reaperArg = "__reaper"

// newGroup starts the reaper. When it cannot (no executable to re-run),
// the child leads a group of its own as before, and only the direct child
// is protected (on Linux) against a killed coord.
func newGroup(stderr io.Writer) *group {
	exe, err := selfExe()
	if err != nil {
		fmt.Fprintf(stderr, "coord: warning: no process-group reaper (%v): if coord is killed, CMD's children may outlive it\n", err)
		return &group{}
	}
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(stderr, "coord: warning: no process-group reaper (%v)\n", err)
		return &group{}
	}
	cmd := exec.Command(exe, reaperArg)
	cmd.Stdin = r
	ready, err := cmd.StdoutPipe()
	if err != nil {
		r.Close()
		w.Close()
		fmt.Fprintf(stderr, "coord: warning: no process-group reaper (%v)\n", err)
		return &group{}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		fmt.Fprintf(stderr, "coord: warning: no process-group reaper (%v)\n", err)
		return &group{}
	}
	r.Close()
	// Wait until the reaper ignores signals: a SIGTERM forwarded to the
	// group must not kill it before the child is gone.
	got := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := io.ReadFull(ready, b[:])
		got <- err
	}()
	select {
	case err = <-got:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("not ready after 10s")
	}
	if err != nil {
		w.Close()
		cmd.Process.Kill()
		cmd.Wait()
		fmt.Fprintf(stderr, "coord: warning: no process-group reaper (%v)\n", err)
		return &group{}
	}
	return &group{pgid: cmd.Process.Pid, reaper: cmd, hangup: w}
}

// start starts cmd in the group (or in a new group of its own when there
// is no reaper) and returns the group's id, for signals.
func (g *group) start(cmd *exec.Cmd) (pgid int, err error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: g.pgid}
	dieWithParent(cmd.SysProcAttr)
	// Linux sends the parent-death signal when the thread that forked
	// exits, not the process; a thread of Go's outlives the goroutine that
	// used it unless that goroutine stays locked to it and exits, so the
	// lock here only keeps the fork and the start on one thread.
	runtime.LockOSThread()
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		return 0, err
	}
	if g.pgid == 0 {
		return cmd.Process.Pid, nil
	}
	return g.pgid, nil
}

// end kills whatever is left in the group (CMD's background processes
// too: nothing of CMD's runs once coord lets go of the hold) and waits
// for the reaper to finish.
func (g *group) end() {
	if g.reaper == nil {
		return
	}
	g.hangup.Close()
	done := make(chan struct{})
	go func() { g.reaper.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		signalGroup(g.pgid, syscall.SIGKILL)
		<-done
	}
}

// runReaper is the reaper's whole life: see group.
func runReaper([]string) int {
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGPIPE, syscall.SIGUSR1, syscall.SIGUSR2)
	if _, err := os.Stdout.Write([]byte{'r'}); err != nil {
		return 1
	}
	os.Stdout.Close()
	_, _ = io.Copy(io.Discard, os.Stdin) // until coord closes its end or dies
	_ = syscall.Kill(-syscall.Getpgrp(), syscall.SIGKILL)
	return 0
}

// signalGroup sends sig to every process in the group pgid.
func signalGroup(pgid int, sig os.Signal) {
	if s, ok := sig.(syscall.Signal); ok {
		_ = syscall.Kill(-pgid, s)
	}
}

func sigNum(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 1
}

// exitCode is the shell's convention: the exit status, or 128+signal.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
