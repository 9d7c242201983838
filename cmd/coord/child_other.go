//go:build !unix

package main

import (
	"errors"
	"io"
	"os"
	"os/exec"
)

// forwarded are the signals coord passes on to a running child.
var forwarded = []os.Signal{os.Interrupt}

// group is only the child itself here: there are no process groups and
// no parent-death signal, so a child (and its children) outlive a killed
// coord. A lost hold still kills the child.
type group struct{}

const reaperArg = "__reaper"

func newGroup(io.Writer) *group { return &group{} }

func (g *group) start(cmd *exec.Cmd) (int, error) {
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	return cmd.Process.Pid, nil
}

func (g *group) end() {}

func runReaper([]string) int {
	os.Stderr.WriteString("coord: " + errors.ErrUnsupported.Error() + "\n")
	return 1
}

// signalGroup can only kill the child itself here.
func signalGroup(pid int, _ os.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func sigNum(os.Signal) int { return 2 }

func exitCode(ps *os.ProcessState) int { return ps.ExitCode() }
