package etcdtest_test

import (
	"os"
	"testing"

	"github.com/coord-go/coord/etcdtest"
)

// TestMain fails the run if a test leaves a goroutine running after the
// servers and clients it started are closed.
func TestMain(m *testing.M) { os.Exit(etcdtest.CheckLeaks(m.Run())) }
