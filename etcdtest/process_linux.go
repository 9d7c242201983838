package etcdtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL an etcd process when the test
// binary dies (a timeout's SIGQUIT, a kill -9), so no server outlives the
// tests that started it. Linux ties this to the thread that forked, not
// the process; Go keeps its threads for the life of the process unless a
// goroutine locked to one exits, which nothing here does.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
