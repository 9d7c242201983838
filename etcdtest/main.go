package etcdtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Main runs a package's tests against one embedded server shared by all
// of them, the way most packages want it: started before the first test
// (with opts), stored in *srv, closed after the last, and the process
// exits with the tests' code. Call it from TestMain:
//
//	var srv *etcdtest.Server
//
//	func TestMain(m *testing.M) { etcdtest.Main(m, &srv, etcdtest.WithoutFsync()) }
//
// Tests then use fresh names (Name) so they can run in parallel on the
// one server. After the last test and the server's Close, Main fails the
// run if any goroutine the tests started is still running (see Leaks):
// a closed client, session or primitive must leave nothing behind.
func Main(m *testing.M, srv **Server, opts ...Option) {
	s, err := Start(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		os.Exit(1)
	}
	*srv = s
	code := m.Run()
	s.Close()
	closeShared()
	os.Exit(CheckLeaks(code))
}

var shared struct {
	sync.Mutex
	srv  *Server
	err  error
	done bool
}

// Shared returns one embedded server (fsync on, as production runs) for
// the whole test binary, started on the first call; every later call
// returns the same server. Main closes it after the last test, before it
// checks for leaks: benchmarks that share one server across a package
// use it rather than a server of their own that nobody closes.
func Shared() (*Server, error) {
	shared.Lock()
	defer shared.Unlock()
	if !shared.done {
		shared.srv, shared.err = Start()
		shared.done = true
	}
	return shared.srv, shared.err
}

func closeShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.srv != nil {
		shared.srv.Close()
		shared.srv = nil
	}
}

var names atomic.Int64

// Name returns a name no other call in the process returns, readable in
// etcd: the test's name and a sequence number. Tests that share a server
// use it for every primitive, so they never see each other's keys.
func Name(t testing.TB) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "."), names.Add(1))
}

// Context returns a context that ends after d or when the test ends,
// whichever is first, so no test waits forever on etcd.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
