//go:build unix && !linux

package main

import "syscall"

// dieWithParent: there is no parent-death signal here (macOS, the BSDs);
// the reaper alone takes the child's group down when coord dies.
func dieWithParent(*syscall.SysProcAttr) {}
