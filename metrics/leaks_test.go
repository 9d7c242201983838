package metrics_test

import (
	"os"
	"testing"

	"github.com/coord-go/coord/etcdtest"
)

// TestMain fails a run that passed but left goroutines running: every
// server, client and session the tests start must be stopped by them.
func TestMain(m *testing.M) { os.Exit(etcdtest.CheckLeaks(m.Run())) }
