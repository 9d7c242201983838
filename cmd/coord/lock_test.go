package main_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestLockPassesTokenKeyAndExitCode(t *testing.T) {
	t.Parallel()
	n := name(t)
	stdout, stderr, code := coord(t, "", "lock", n, "--", "sh", "-c", `echo "$COORD_TOKEN $COORD_KEY"; exit 7`)
	if code != 7 {
		t.Fatalf("exit code %d, want the child's 7; stderr %q", code, stderr)
	}
	f := strings.Fields(stdout)
	if len(f) != 2 {
		t.Fatalf("child printed %q, want token and key", stdout)
	}
	if tok, err := strconv.ParseInt(f[0], 10, 64); err != nil || tok <= 0 {
		t.Errorf("COORD_TOKEN = %q, want a positive revision", f[0])
	}
	if !strings.HasPrefix(f[1], "coord/lock/"+n+"/w/") {
		t.Errorf("COORD_KEY = %q, want a key in the lock's line", f[1])
	}
	if kvs := keysUnder(t, "coord/lock/"+n+"/"); len(kvs) != 0 {
		t.Errorf("keys left after the command: %v", kvs)
	}
}

// background starts coord and returns a channel with its exit code.
func background(t *testing.T, stdout, stderr *syncBuffer, args ...string) <-chan int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := command(ctx, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		defer cancel()
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			done <- ee.ExitCode()
			return
		}
		if err != nil {
			done <- -1
			return
		}
		done <- 0
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	return done
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func waitCode(t *testing.T, done <-chan int, d time.Duration, what string) int {
	t.Helper()
	select {
	case c := <-done:
		return c
	case <-time.After(d):
		t.Fatalf("coord did not exit within %s: %s", d, what)
		return 0
	}
}

// revokeKeyLease revokes the lease that key is attached to, as an expiry
// or an operator would.
func revokeKeyLease(t *testing.T, key string) {
	t.Helper()
	resp, err := srv.Client().Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("key %q: %v %v", key, resp, err)
	}
	if _, err := srv.Client().Revoke(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
}

func TestLockLostKillsChild(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		script string // writes $COORD_KEY to $1 when running
		want   int
	}{
		// A child that exits on SIGTERM: its own status comes through.
		{"term", `trap 'exit 42' TERM; echo "$COORD_KEY" > "$1"; while :; do sleep 0.05; done`, 42},
		// A child that ignores SIGTERM: SIGKILL after the grace period.
		{"kill", `trap '' TERM; echo "$COORD_KEY" > "$1"; while :; do sleep 0.05; done`, 128 + 9},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ready := filepath.Join(t.TempDir(), "key")
			var stdout, stderr syncBuffer
			done := background(t, &stdout, &stderr, "lock", "--grace", "1s", name(t), "--", "sh", "-c", c.script, "sh", ready)
			eventually(t, 20*time.Second, "child started", func() bool {
				b, _ := os.ReadFile(ready)
				return strings.HasSuffix(string(b), "\n")
			})
			key, _ := os.ReadFile(ready)
			revoked := time.Now()
			revokeKeyLease(t, strings.TrimSpace(string(key)))
			code := waitCode(t, done, 10*time.Second, "after the lease was revoked")
			if code != c.want {
				t.Errorf("exit code %d, want %d; stderr %q", code, c.want, stderr.String())
			}
			// Generous: the grace period is 1 s; CI is slow.
			if d := time.Since(revoked); d > 8*time.Second {
				t.Errorf("child stopped %s after the loss", d)
			}
			if !strings.Contains(stderr.String(), "lost") {
				t.Errorf("stderr does not say the lock was lost: %q", stderr.String())
			}
		})
	}
}

func TestLockTryRunsOnce(t *testing.T) {
	t.Parallel()
	n := name(t)
	dir := t.TempDir()
	count, release := filepath.Join(dir, "count"), filepath.Join(dir, "release")
	// The command holds the lock until the test creates the release file,
	// so both runs really overlap.
	script := `echo run >> "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`
	var out [2]syncBuffer
	var errs [2]syncBuffer
	var dones [2]<-chan int
	for i := range dones {
		dones[i] = background(t, &out[i], &errs[i], "lock", "--try", n, "--", "sh", "-c", script, "sh", count, release)
	}
	// One of them must skip while the other runs, with the conflict code.
	var skipped int
	select {
	case c := <-dones[0]:
		skipped = 0
		if c != 75 {
			t.Fatalf("skipping run exited %d, want 75: %q", c, errs[0].String())
		}
	case c := <-dones[1]:
		skipped = 1
		if c != 75 {
			t.Fatalf("skipping run exited %d, want 75: %q", c, errs[1].String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("neither --try run returned while the other held the lock")
	}
	if !strings.Contains(errs[skipped].String(), "held elsewhere") {
		t.Errorf("skipping run's stderr %q does not say why", errs[skipped].String())
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c := waitCode(t, dones[1-skipped], 20*time.Second, "after release"); c != 0 {
		t.Errorf("running run exited %d: %q", c, errs[1-skipped].String())
	}
	b, _ := os.ReadFile(count)
	if got := strings.Count(string(b), "run"); got != 1 {
		t.Errorf("command ran %d times, want exactly once", got)
	}
}

func TestLockWaitsForHolder(t *testing.T) {
	t.Parallel()
	n := name(t)
	dir := t.TempDir()
	started, release, log := filepath.Join(dir, "started"), filepath.Join(dir, "release"), filepath.Join(dir, "log")
	var o1, e1, o2, e2 syncBuffer
	first := background(t, &o1, &e1, "lock", n, "--", "sh", "-c",
		`touch "$1"; while [ ! -e "$2" ]; do sleep 0.02; done; echo first >> "$3"`, "sh", started, release, log)
	eventually(t, 20*time.Second, "first holder running", func() bool { return fileExists(started) })
	second := background(t, &o2, &e2, "lock", n, "--", "sh", "-c", `echo second >> "$1"`, "sh", log)
	// The second must be queued behind the first: its key is in the line.
	eventually(t, 20*time.Second, "second waiter queued", func() bool { return len(keysUnder(t, "coord/lock/"+n+"/")) == 2 })
	if fileExists(log) {
		t.Fatal("second command ran while the first held the lock")
	}
	os.WriteFile(release, nil, 0o644)
	waitCode(t, first, 20*time.Second, "first")
	waitCode(t, second, 20*time.Second, "second")
	if b, _ := os.ReadFile(log); string(b) != "first\nsecond\n" {
		t.Errorf("order %q, want first then second", b)
	}
}

// Usage errors are one line that says where the help is, exit 2, and are
// found before coord connects: every case here points at a closed port, so
// a check made after connecting would fail with 1 instead.
func TestLockBadUsage(t *testing.T) {
	t.Parallel()
	closed := []string{"--endpoints", "127.0.0.1:1", "--dial-timeout", "300ms"}
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"lock", "", "--", "true"}, "empty"},
		{[]string{"lock", strings.Repeat("x", 600), "--", "true"}, "512"},
		{[]string{"lock", "x"}, "no command"},
		{[]string{"lock", "x", "./backup.sh"}, "CMD must follow '--'"},
		{[]string{"lock", "--", "true"}, "NAME"},
		{[]string{"lock", "--bogus", "x", "--", "true"}, "bogus"},
		{[]string{"lock", "--ttl", "500ms", "x", "--", "true"}, "under 1s"},
		{[]string{"lock", "--try", "--wait", "1s", "x", "--", "true"}, "--try and --wait"},
		{[]string{"lock", "--conflict-exit", "300", "x", "--", "true"}, "0-255"},
		{[]string{"lock", "--prefix", "", "x", "--", "true"}, "root prefix is empty"},
		{[]string{"sem", "--ttl", "0s", "--capacity", "1", "x", "--", "true"}, "under 1s"},
		{[]string{"elect", "x", "--", "true"}, "NAME and VALUE"},
		{[]string{"elect", "x", "v", "./serve"}, "CMD must follow '--'"},
		{[]string{"queue", "claim", "--ttl", "10ms", "x"}, "under 1s"},
		{[]string{"queue", "claim", "x", "./work.sh"}, "CMD must follow '--'"},
		{[]string{"status", "--kind", "mutex"}, "unknown kind"},
		{[]string{"leader", ""}, "empty"},
		{[]string{"leader", "-o", "yaml", "x"}, "text or json"},
	} {
		args := append(append([]string{}, c.args[:1]...), append(closed, c.args[1:]...)...)
		if c.args[0] == "queue" {
			args = append([]string{"queue", c.args[1]}, append(closed, c.args[2:]...)...)
		}
		_, stderr, code := coord(t, "", args...)
		cmd := c.args[0]
		if cmd == "queue" {
			cmd += " " + c.args[1]
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if code != 2 || !strings.Contains(stderr, c.msg) || len(lines) != 1 || !strings.Contains(stderr, "run 'coord "+cmd+" -h'") {
			t.Errorf("coord %q: code %d, stderr %q; want 2 and one line with %q and the help hint", c.args, code, stderr, c.msg)
		}
	}
	if _, stderr, code := coord(t, "", "lock", name(t), "--", "/nonexistent/cmd"); code != 127 || !strings.Contains(stderr, "nonexistent") {
		t.Errorf("missing CMD: code %d, stderr %q; want 127", code, stderr)
	}
}

func TestStatusShowsHolderAndWaiter(t *testing.T) {
	t.Parallel()
	n := name(t)
	dir := t.TempDir()
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o1, e1, o2, e2 syncBuffer
	first := background(t, &o1, &e1, "lock", n, "--", "sh", "-c",
		`echo "$COORD_TOKEN" > "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, release)
	eventually(t, 20*time.Second, "holder running", func() bool {
		b, _ := os.ReadFile(started)
		return strings.HasSuffix(string(b), "\n")
	})
	second := background(t, &o2, &e2, "lock", n, "--", "true")
	eventually(t, 20*time.Second, "waiter queued", func() bool { return len(keysUnder(t, "coord/lock/"+n+"/")) == 2 })
	token, _ := os.ReadFile(started)
	out, stderr, code := coord(t, "", "status", "--kind", "lock", "--name", n)
	if code != 0 || !strings.Contains(out, n) || !strings.Contains(out, strings.TrimSpace(string(token))) {
		t.Errorf("status: code %d, stderr %q, out:\n%s\nwant the lock and its holder's token %s", code, stderr, out, token)
	}
	out, _, code = coord(t, "", "status")
	if code != 0 || !strings.Contains(out, n) {
		t.Errorf("status of everything: code %d, out:\n%s", code, out)
	}
	os.WriteFile(release, nil, 0o644)
	waitCode(t, first, 20*time.Second, "first")
	waitCode(t, second, 20*time.Second, "second")
}

// started runs coord in the background and returns the process too, for
// tests that signal it.
func started(t *testing.T, stderr *syncBuffer, args ...string) (*exec.Cmd, <-chan int) {
	t.Helper()
	cmd := command(context.Background(), args...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	done := make(chan int, 1)
	go func() {
		cmd.Wait()
		done <- cmd.ProcessState.ExitCode()
	}()
	return cmd, done
}

func TestLockSignals(t *testing.T) {
	t.Parallel()
	n := name(t)
	ready := filepath.Join(t.TempDir(), "ready")
	// SIGTERM to coord reaches the child, whose status comes through.
	var e1 syncBuffer
	holder, hdone := started(t, &e1, "lock", n, "--", "sh", "-c",
		`trap 'exit 42' TERM; touch "$1"; while :; do sleep 0.05; done`, "sh", ready)
	eventually(t, 20*time.Second, "holder running", func() bool { return fileExists(ready) })

	// SIGINT to a waiter makes it leave the line: exit 130, key gone.
	var e2 syncBuffer
	waiter, wdone := started(t, &e2, "lock", n, "--", "true")
	eventually(t, 20*time.Second, "waiter queued", func() bool { return len(keysUnder(t, "coord/lock/"+n+"/")) == 2 })
	waiter.Process.Signal(os.Interrupt)
	if c := waitCode(t, wdone, 10*time.Second, "waiter after SIGINT"); c != 130 {
		t.Errorf("interrupted waiter exited %d, want 130; stderr %q", c, e2.String())
	}
	if kvs := keysUnder(t, "coord/lock/"+n+"/"); len(kvs) != 1 {
		t.Errorf("after the waiter left, want only the holder's key, got %v", kvs)
	}

	holder.Process.Signal(syscall.SIGTERM)
	if c := waitCode(t, hdone, 10*time.Second, "holder after SIGTERM"); c != 42 {
		t.Errorf("holder exited %d, want the child's 42; stderr %q", c, e1.String())
	}
	eventually(t, 5*time.Second, "lock released", func() bool { return len(keysUnder(t, "coord/lock/"+n+"/")) == 0 })
}
