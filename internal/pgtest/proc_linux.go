package pgtest

import "syscall"

// procAttr runs a server process as cred and has the kernel kill it if
// the test binary dies.
func procAttr(c *cred) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: c, Pdeathsig: syscall.SIGKILL}
}
