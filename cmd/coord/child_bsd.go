//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// dieWithParent: there is no parent-death signal here (macOS, the BSDs);
// the reaper alone takes the child's group down when coord dies.
func dieWithParent(*syscall.SysProcAttr) {}

// selfExe names the running binary, for the reaper.
func selfExe() (string, error) { return os.Executable() }
