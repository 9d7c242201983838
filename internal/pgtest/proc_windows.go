package pgtest

import (
	"os"
	"syscall"
)

type cred struct{}

func credential(string) (*cred, error) { return nil, nil }

func procAttr(*cred) *syscall.SysProcAttr { return nil }

func stop(p *os.Process) { p.Kill() }
