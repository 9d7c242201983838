package main_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid is a live process: a zombie whose parent is
// gone (PID 1 here may not reap) has finished running and counts as dead.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state is the field after the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] != 'Z' && b[i+2] != 'X'
}

// pids reads the pids a child script wrote, one per line, once it has
// written want of them.
func pids(t *testing.T, file string, want int) []int {
	t.Helper()
	var out []int
	eventually(t, 20*time.Second, "child wrote its pids", func() bool {
		b, _ := os.ReadFile(file)
		out = out[:0]
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return len(out) >= want && strings.HasSuffix(string(b), "\n")
	})
	return out
}

// A child and its own child (a shell's background job) die with coord,
// even when coord gets SIGKILL and can do nothing about it, for every
// command that runs a child under something held. For the lock, a second
// holder starts only after both are gone.
func TestChildDiesWithKilledCoord(t *testing.T) {
	t.Parallel()
	// The child starts a grandchild in the background, writes both pids,
	// and waits for it: the grandchild is what only the reaper reaches.
	script := `sleep 1000 & echo "$$ $!" > "$1.tmp"; mv "$1.tmp" "$1"; wait`
	for _, c := range []struct {
		name string
		args func(n, pidFile string) []string
		push bool // queue claim needs a message first
	}{
		{"lock", func(n, f string) []string {
			return []string{"lock", "--ttl", "2s", n, "--", "sh", "-c", script, "sh", f}
		}, false},
		{"sem", func(n, f string) []string {
			return []string{"sem", "--ttl", "2s", "--capacity", "1", n, "--", "sh", "-c", script, "sh", f}
		}, false},
		{"elect", func(n, f string) []string {
			return []string{"elect", "--ttl", "2s", n, "v", "--", "sh", "-c", script, "sh", f}
		}, false},
		{"queue claim", func(n, f string) []string {
			return []string{"queue", "claim", "--ttl", "2s", n, "--", "sh", "-c", script, "sh", f}
		}, true},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			t.Parallel()
			n := name(t)
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "pids")
			if c.push {
				if _, stderr, code := coord(t, "", "queue", "push", n, "job"); code != 0 {
					t.Fatalf("push: %d %s", code, stderr)
				}
			}
			var stderr syncBuffer
			cmd, done := started(t, &stderr, c.args(n, pidFile)...)
			ps := pids(t, pidFile, 2)
			child, grandchild := ps[0], ps[1]
			if !alive(child) || !alive(grandchild) {
				t.Fatalf("child %d or grandchild %d not running before the kill", child, grandchild)
			}
			killed := time.Now()
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitCode(t, done, 10*time.Second, "coord after SIGKILL")
			eventually(t, 5*time.Second, "child and grandchild gone after coord's SIGKILL", func() bool {
				return !alive(child) && !alive(grandchild)
			})
			t.Logf("child and grandchild gone %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
			if c.name != "lock" {
				return
			}
			// The next holder gets the lock once the killed one's lease
			// (TTL 2 s) runs out, and by then nothing of the first runs.
			check := filepath.Join(dir, "check")
			_, stderr2, code := coord(t, "", "lock", n, "--", "sh", "-c",
				`for p in "$@"; do s=$(cut -d')' -f2 /proc/$p/stat 2>/dev/null | cut -c2); if [ -n "$s" ] && [ "$s" != Z ]; then echo "$p alive"; fi; done > "$0"`,
				check, strconv.Itoa(child), strconv.Itoa(grandchild))
			if code != 0 {
				t.Fatalf("second holder: code %d, stderr %q", code, stderr2)
			}
			if b, _ := os.ReadFile(check); len(b) != 0 {
				t.Errorf("when the second holder started: %s", b)
			}
		})
	}
}

// Background processes a child leaves behind do not run on after coord
// has released the lock: the child's whole group is killed when it exits.
func TestChildLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pid")
	_, stderr, code := coord(t, "", "lock", name(t), "--", "sh", "-c",
		`sleep 1000 > /dev/null 2>&1 & echo "$!" > "$1"`, "sh", pidFile)
	if code != 0 {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	left := pids(t, pidFile, 1)[0]
	eventually(t, 5*time.Second, "background process killed after the child exited", func() bool { return !alive(left) })
}
