//go:build unix && !linux

package pgtest

import "syscall"

func procAttr(c *cred) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: c}
}
