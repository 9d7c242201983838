package main_test

import (
	"github.com/coord-go/coord/internal/harness/bench"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about 10 s; run without -short")
	}
	t.Parallel()
	start := time.Now()
	stdout, stderr, code := coord(t, "", "demo")
	if code != 0 {
		t.Fatalf("demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"CRASH", "leads now", "again (attempt 2)", "none lost", "never twice"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("demo's story lacks %q:\n%s", want, stdout)
		}
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("demo took %s, want under a minute", d)
	}
}

func TestBenchShort(t *testing.T) {
	if testing.Short() {
		t.Skip("bench runs 16 timed cases; run without -short")
	}
	t.Parallel()
	// --duration keeps the test quick; --short alone runs 1 s per side.
	stdout, stderr, code := coord(t, "", "bench", "--short", "--duration", "200ms")
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, stderr)
	}
	prims := map[string]bool{}
	for _, c := range bench.Cases() {
		prims[c.Primitive] = true
	}
	var rows []string
	for _, r := range regexp.MustCompile(`(?m)^\| ([a-z]+) \|.*\|$`).FindAllStringSubmatch(stdout, -1) {
		if prims[r[1]] && r[1] != "floor" {
			rows = append(rows, r[0])
		}
	}
	if want := len(bench.Cases()) - 1; len(rows) != want { // every case but the floor is a row
		t.Fatalf("want %d table rows, got %d:\n%s", want, len(rows), stdout)
	}
	for _, r := range rows {
		cells := strings.Split(strings.Trim(r, "|"), "|")
		if len(cells) != 13 {
			t.Fatalf("row %q has %d cells, want 13", r, len(cells))
		}
		for _, i := range []int{3, 4} { // coord and etcd ops/s
			if v, err := strconv.ParseFloat(strings.TrimSpace(cells[i]), 64); err != nil || v <= 0 {
				t.Errorf("row %q: ops/s cell %q is not positive", r, cells[i])
			}
		}
	}
	if !strings.Contains(stdout, "| primitive | case |") {
		t.Errorf("no table header:\n%s", stdout)
	}
}

func TestSem(t *testing.T) {
	t.Parallel()
	n := name(t)
	dir := t.TempDir()
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o, e syncBuffer
	holder := background(t, &o, &e, "sem", n, "--capacity", "3", "--weight", "2", "--", "sh", "-c",
		`echo "$COORD_TOKEN $COORD_KEY" > "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, release)
	eventually(t, 20*time.Second, "holder running", func() bool {
		b, _ := os.ReadFile(started)
		return strings.HasSuffix(string(b), "\n")
	})
	b, _ := os.ReadFile(started)
	if f := strings.Fields(string(b)); len(f) != 2 || !strings.HasPrefix(f[1], "coord/semaphore/"+n+"/") {
		t.Errorf("child env: %q", b)
	}
	// 2 of 3 permits are held: 2 more do not fit now, 1 does.
	_, stderr, code := coord(t, "", "sem", n, "--capacity", "3", "--weight", "2", "--try", "--", "sh", "-c", "exit 9")
	if code != 75 || !strings.Contains(stderr, "no 2 free permits") {
		t.Errorf("--try with no room: code %d, stderr %q", code, stderr)
	}
	if _, stderr, code := coord(t, "", "sem", n, "--capacity", "3", "--try", "--", "sh", "-c", "exit 9"); code != 9 {
		t.Errorf("--try with room: code %d, want the child's 9; stderr %q", code, stderr)
	}
	// The error names the semaphore once (the library's wrap), not once
	// per layer.
	if _, stderr, code := coord(t, "", "sem", n, "--capacity", "5", "--", "true"); code != 1 || !strings.Contains(stderr, "capacity mismatch") ||
		strings.Count(stderr, `semaphore "`+n+`"`) != 1 {
		t.Errorf("other capacity: code %d, stderr %q; want 1, the mismatch, the name once", code, stderr)
	}
	os.WriteFile(release, nil, 0o644)
	if c := waitCode(t, holder, 20*time.Second, "holder"); c != 0 {
		t.Errorf("holder exited %d: %s", c, e.String())
	}
	for _, args := range [][]string{
		{"sem", n, "--", "true"},
		{"sem", n, "--capacity", "2", "--weight", "3", "--", "true"},
	} {
		if _, stderr, code := coord(t, "", args...); code != 2 {
			t.Errorf("coord %q: code %d, want 2; stderr %q", args, code, stderr)
		}
	}
}

func TestElectLeaderObserve(t *testing.T) {
	t.Parallel()
	n := name(t)
	dir := t.TempDir()
	var obsOut, obsErr syncBuffer
	background(t, &obsOut, &obsErr, "observe", n)
	eventually(t, 20*time.Second, "observe prints no leader", func() bool { return strings.Contains(obsOut.String(), "no leader") })

	if _, stderr, code := coord(t, "", "leader", n); code != 3 || !strings.Contains(stderr, "no leader") {
		t.Errorf("leader with none: code %d, stderr %q", code, stderr)
	}
	ready, release := filepath.Join(dir, "ready"), filepath.Join(dir, "release")
	// Not --once: after a loss it campaigns again and runs CMD again, so
	// the child appends a line per run.
	var o, e syncBuffer
	done := background(t, &o, &e, "elect", n, "v1", "--grace", "1s", "--", "sh", "-c",
		`echo "$COORD_TOKEN" >> "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", ready, release)
	lines := func() []string {
		b, _ := os.ReadFile(ready)
		return strings.Fields(string(b))
	}
	eventually(t, 20*time.Second, "leading", func() bool { return len(lines()) == 1 })
	stdout, stderr, code := coord(t, "", "leader", n)
	if code != 0 || stdout != "v1\t"+lines()[0]+"\n" {
		t.Errorf("leader: code %d, stdout %q, stderr %q; want v1 and token %s", code, stdout, stderr, lines()[0])
	}
	eventually(t, 20*time.Second, "observe prints the leader", func() bool { return strings.Contains(obsOut.String(), "leader v1 token "+lines()[0]) })

	// Lose the leadership: the child is stopped and, after a new
	// campaign, started again with a higher token.
	kvs := keysUnder(t, "coord/election/"+n+"/c/")
	if len(kvs) != 1 {
		t.Fatalf("want one candidate key, got %v", kvs)
	}
	revokeKeyLease(t, kvs[0].Key)
	eventually(t, 20*time.Second, "re-elected and CMD run again", func() bool { return len(lines()) == 2 })
	l := lines()
	t0, _ := strconv.ParseInt(l[0], 10, 64)
	t1, _ := strconv.ParseInt(l[1], 10, 64)
	if t0 <= 0 || t1 <= t0 {
		t.Errorf("tokens %v: want positive and increasing across leaderships", l)
	}
	os.WriteFile(release, nil, 0o644)
	if c := waitCode(t, done, 20*time.Second, "elect after CMD exits"); c != 0 {
		t.Errorf("elect exited %d: %s", c, e.String())
	}
	if !strings.Contains(e.String(), "lost") {
		t.Errorf("stderr does not report the loss: %q", e.String())
	}
	if _, _, code := coord(t, "", "leader", n); code != 3 {
		t.Errorf("leader after elect exited: code %d, want 3 (resigned: no leader)", code)
	}
}

func TestQueue(t *testing.T) {
	t.Parallel()
	n := name(t)
	id, stderr, code := coord(t, "", "queue", "push", n, "hello")
	if code != 0 || strings.TrimSpace(id) == "" {
		t.Fatalf("push: code %d, %q %q", code, id, stderr)
	}
	if _, stderr, code := coord(t, "from stdin", "queue", "push", n); code != 0 {
		t.Fatalf("push from stdin: %d %q", code, stderr)
	}
	if out, _, _ := coord(t, "", "queue", "len", n); !strings.Contains(out, "ready 2\n") {
		t.Errorf("len: %q", out)
	}
	// CMD gets the payload on stdin and is acked on exit 0.
	out, stderr, code := coord(t, "", "queue", "claim", n, "--", "sh", "-c", `echo "$COORD_MESSAGE_ID $COORD_ATTEMPT $(cat)"`)
	if code != 0 || out != strings.TrimSpace(id)+" 1 hello\n" {
		t.Errorf("claim -- CMD: code %d, out %q, stderr %q", code, out, stderr)
	}
	// Without CMD: prints id and payload, and acks.
	out, _, code = coord(t, "", "queue", "claim", n)
	if code != 0 || !strings.HasSuffix(out, "\nfrom stdin\n") {
		t.Errorf("claim: code %d, out %q", code, out)
	}
	if out, _, _ := coord(t, "", "queue", "len", n); !strings.Contains(out, "ready 0\nclaimed 0\n") {
		t.Errorf("len after acks: %q", out)
	}
	if _, stderr, code := coord(t, "", "queue", "claim", n, "--wait", "300ms"); code != 75 || !strings.Contains(stderr, "no message") {
		t.Errorf("claim on empty queue: code %d, stderr %q", code, stderr)
	}

	// A failing CMD nacks; with --max-attempts 1 the message is dead.
	id, _, _ = coord(t, "", "queue", "push", n, "doomed")
	id = strings.TrimSpace(id)
	if _, _, code := coord(t, "", "queue", "claim", n, "--max-attempts", "1", "--", "sh", "-c", "exit 5"); code != 5 {
		t.Errorf("failing CMD: code %d, want 5", code)
	}
	out, _, _ = coord(t, "", "queue", "dead", n)
	if !strings.HasPrefix(out, id+"\t1\t") || !strings.Contains(out, `"doomed"`) ||
		!strings.Contains(out, "\tmax attempts\t") || !strings.Contains(out, "exited with status 5") {
		t.Errorf("dead: %q, want %s, its reason and last error", out, id)
	}
	// Settings are the queue's: shown, changed, and refused when bad.
	if out, _, code := coord(t, "", "queue", "config", n); code != 0 || !strings.Contains(out, "max-attempts 1\n") {
		t.Errorf("config: code %d, %q; want the stored max-attempts 1", code, out)
	}
	if out, _, code := coord(t, "", "queue", "config", n, "--max-attempts", "4", "--dead-retention", "24h"); code != 0 ||
		!strings.Contains(out, "max-attempts 4\n") || !strings.Contains(out, "dead-retention 24h0m0s") {
		t.Errorf("config change: code %d, %q", code, out)
	}
	if _, stderr, code := coord(t, "", "queue", "config", n, "--backoff-min", "-1s"); code != 2 {
		t.Errorf("config with a negative backoff: code %d, %q; want 2", code, stderr)
	}
	if _, _, code := coord(t, "", "queue", "claim", n, "--max-attempts", "1", "--wait", "1s"); code != 1 {
		t.Errorf("claim expecting 1 attempt of a queue stored with 4: code %d, want 1 (settings differ)", code)
	}
	if _, _, code := coord(t, "", "queue", "config", n, "--max-attempts", "1"); code != 0 {
		t.Errorf("config back to 1: code %d", code)
	}
	// A unique job: the second push is refused with the first's id.
	u1, _, code := coord(t, "", "queue", "push", n, "--unique", "nightly", "a")
	u2, _, code2 := coord(t, "", "queue", "push", n, "--unique", "nightly", "b")
	if code != 0 || code2 != 75 || u1 != u2 {
		t.Errorf("unique pushes: %q (code %d) then %q (code %d); want the same id, exit 75", u1, code, u2, code2)
	}
	if _, _, code := coord(t, "", "queue", "claim", n); code != 0 {
		t.Errorf("claim of the unique job: %d", code)
	}
	if _, stderr, code := coord(t, "", "queue", "redrive", n, id); code != 0 {
		t.Errorf("redrive: %d %q", code, stderr)
	}
	if out, _, _ := coord(t, "", "queue", "len", n); !strings.Contains(out, "ready 1\n") || !strings.Contains(out, "dead 0") {
		t.Errorf("len after redrive: %q", out)
	}
	if _, stderr, code := coord(t, "", "queue", "redrive", n, id); code != 1 || !strings.Contains(stderr, "no dead letter") {
		t.Errorf("second redrive: %d %q", code, stderr)
	}
	if _, _, code := coord(t, "", "queue", "ack", n, id); code != 2 {
		t.Errorf("ack: code %d, want 2 with an explanation", code)
	}
	if _, _, code := coord(t, "", "queue", "bogus", n); code != 2 {
		t.Errorf("unknown subcommand: code %d", code)
	}
}
