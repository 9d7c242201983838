package main_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The tests run the built binary, as users do, against one shared
// embedded etcd.
var (
	bin string
	srv *etcdtest.Server
	seq atomic.Int64
)

func TestMain(m *testing.M) {
	os.Exit(etcdtest.CheckLeaks(testMain(m)))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		// Fuzzing runs FuzzArgs alone (-run=^$), in-process and with no
		// etcd, in every fuzz worker: building the binary and starting
		// a server for each would take most of a short fuzz run.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "coord-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "coord")
	build := exec.Command("go", "build", "-race", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build coord:", err)
		return 1
	}
	srv, err = etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Close()
	return m.Run()
}

// name returns a name no other test uses.
func name(t *testing.T) string {
	return fmt.Sprintf("%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), seq.Add(1))
}

// command returns the coord command for args, pointed at the test server.
func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	// The race runtime sleeps a second at every exit (atexit_sleep_ms) so
	// other threads can finish a report; races are still found and still
	// exit 66, and the hundred-odd runs here stop costing a second each.
	cmd.Env = append(os.Environ(), "ETCDCTL_ENDPOINTS="+strings.Join(srv.Endpoints(), ","),
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// coord runs coord to the end (within a minute) and returns its output
// and exit code.
func coord(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := command(ctx, args...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("coord %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keysUnder returns the keys under prefix.
func keysUnder(t *testing.T, prefix string) []*mvccKV {
	t.Helper()
	resp, err := srv.Client().Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*mvccKV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = &mvccKV{Key: string(kv.Key), Lease: kv.Lease, CreateRevision: kv.CreateRevision}
	}
	return out
}

type mvccKV struct {
	Key            string
	Lease          int64
	CreateRevision int64
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"lock", "sem", "elect", "leader", "observe", "dev", "demo", "bench", "queue push", "queue claim", "queue len", "queue dead", "queue redrive"} {
		args := append(strings.Fields(c), "-h")
		_, stderr, code := coord(t, "", args...)
		if code != 0 || !strings.Contains(stderr, "usage: coord "+c) {
			t.Errorf("coord %s -h: code %d, stderr %q", c, code, stderr)
		}
	}
	_, stderr, code := coord(t, "", "nosuch")
	if code != 2 || !strings.Contains(stderr, `unknown command "nosuch"`) {
		t.Errorf("unknown command: code %d, stderr %q", code, stderr)
	}
}
