package main

import "syscall"

// dieWithParent makes the kernel SIGKILL the child the moment coord dies,
// even before the reaper has acted, and even when there is no reaper.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
