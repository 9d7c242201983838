//go:build !unix

package etcdtest

import (
	"errors"
	"os"
)

// Windows has no SIGSTOP: a process member cannot be paused there.
func pause(*os.Process) error  { return errors.ErrUnsupported }
func resume(*os.Process) error { return nil }
