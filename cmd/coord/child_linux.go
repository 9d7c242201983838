package main

import "syscall"

// dieWithParent makes the kernel SIGKILL the child the moment coord dies,
// even before the reaper has acted, and even when there is no reaper.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// selfExe names the running binary even if its file was replaced since
// (an upgrade while a lock is held): the reaper must be this very coord.
func selfExe() (string, error) { return "/proc/self/exe", nil }
