package etcdtest

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/goleak"
)

// leakWait bounds how long Leaks waits for goroutines that are already
// ending: a closed client's gRPC transport and an embedded server's
// raft and HTTP loops take a moment to return after Close, longer on a
// loaded machine under -race. Anything still running after it leaked.
const leakWait = 10 * time.Second

// Leaks reports the goroutines still running that the tests started and
// should have stopped, or nil when none is: call it after the tests and
// after closing every server and client (Main does). It waits up to ten
// seconds for goroutines that are on their way out, so it only fails on
// ones that stay.
//
// Goroutines that the standard library and the runtime keep for the life
// of the process are not leaks; nor is anything running before the
// tests started when IgnoreCurrent is passed in opts.
func Leaks(opts ...goleak.Option) error {
	deadline := time.Now().Add(leakWait)
	for {
		// Nothing is ignored beyond goleak's own defaults (the testing
		// package's and os/signal's goroutines): every goroutine of etcd's
		// server and client ends with its Close, given the wait above.
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CheckLeaks returns a test run's exit code after the leak check: code
// itself, or 1 when the tests passed but Leaks finds goroutines left
// (printed on stderr). A TestMain that does not use Main calls it last,
// after closing what it started:
//
//	code := m.Run()
//	srv.Close()
//	os.Exit(etcdtest.CheckLeaks(code))
//
// A run that failed already is not checked: its goroutines are the
// failure's, not news.
func CheckLeaks(code int) int {
	if code != 0 {
		return code
	}
	if err := Leaks(); err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest: goroutines left running after the tests:", err)
		return 1
	}
	return 0
}
