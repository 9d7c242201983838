//go:build !unix

package main

import (
	"os"
	"os/exec"
)

// forwarded are the signals coord passes on to a running child.
var forwarded = []os.Signal{os.Interrupt}

// ownGroup does nothing where there are no process groups.
func ownGroup(*exec.Cmd) {}

// signalGroup can only kill the child itself here.
func signalGroup(pid int, _ os.Signal) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func sigNum(os.Signal) int { return 2 }

func exitCode(ps *os.ProcessState) int { return ps.ExitCode() }
