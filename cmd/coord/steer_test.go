package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An operator steers an election from the CLI: candidates with
// priorities under a preempting rule, the candidate list as JSON, a
// transfer to a chosen candidate (the leader's CMD stops first, and the
// old leader campaigns again), and a preemption by a candidate of higher
// priority. The runs log shows one leader at a time, tokens increasing.
func TestElectTransferAndPriority(t *testing.T) {
	t.Parallel()
	n := name(t)
	runs := filepath.Join(t.TempDir(), "runs")
	// Each CMD logs "start VALUE TOKEN" and, when stopped, "stop VALUE".
	script := `echo "start $COORD_VALUE $COORD_TOKEN" >> "$1"; trap 'echo "stop $COORD_VALUE" >> "$1"; exit 0' TERM; while :; do sleep 0.05; done`
	elect := func(value, prio string) {
		var o, e syncBuffer
		background(t, &o, &e, "elect", n, value, "--rule", "preempt", "--priority", prio, "--grace", "5s", "--", "sh", "-c", script, "sh", runs)
	}
	lines := func() []string {
		b, _ := os.ReadFile(runs)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	leaderIs := func(value string) bool {
		out, _, code := coord(t, "", "leader", n)
		return code == 0 && strings.HasPrefix(out, value+"\t")
	}
	elect("a", "1")
	eventually(t, 20*time.Second, "a leads", func() bool { return leaderIs("a") })
	// b has a's priority: under preempt it does not take over on joining,
	// and after the handover a does not take it back (a lower b would be
	// preempted by a at once, as the rule says).
	elect("b", "1")
	var doc struct {
		Leader     bool
		Value      string
		Token      int64
		Candidates []struct {
			ID       string
			Value    string
			Priority int
			Leader   bool
		}
	}
	eventually(t, 20*time.Second, "b listed", func() bool {
		out, _, code := coord(t, "", "leader", n, "-o", "json")
		return code == 0 && json.Unmarshal([]byte(out), &doc) == nil && len(doc.Candidates) == 2
	})
	if !doc.Leader || doc.Value != "a" || !doc.Candidates[0].Leader || doc.Candidates[0].Value != "a" ||
		doc.Candidates[0].Priority != 1 || doc.Candidates[1].Value != "b" || doc.Candidates[1].ID == "" {
		t.Fatalf("leader -o json: %+v", doc)
	}

	// Hand over to b by its id: a's CMD stops before b's starts.
	out, stderr, code := coord(t, "", "transfer", n, doc.Candidates[1].ID)
	if code != 0 || !strings.HasPrefix(out, doc.Candidates[1].ID+"\tb\t") {
		t.Fatalf("transfer: code %d, out %q, stderr %q", code, out, stderr)
	}
	eventually(t, 20*time.Second, "b's CMD started", func() bool { return strings.Contains(strings.Join(lines(), "\n"), "start b") })
	if _, stderr, code := coord(t, "", "transfer", n, "nobody"); code != 1 || !strings.Contains(stderr, "no such candidate") {
		t.Errorf("transfer to nobody: code %d, stderr %q", code, stderr)
	}

	// c joins with a higher priority than everyone: the rule preempts b.
	elect("c", "5")
	eventually(t, 20*time.Second, "c leads", func() bool { return leaderIs("c") })
	eventually(t, 20*time.Second, "c's CMD started", func() bool { return strings.Contains(strings.Join(lines(), "\n"), "start c") })

	// One leader at a time, in the order steered, tokens increasing.
	var running string
	var last int64
	var order []string
	for _, l := range lines() {
		f := strings.Fields(l)
		switch f[0] {
		case "start":
			if running != "" {
				t.Fatalf("%s started while %s ran:\n%s", f[1], running, strings.Join(lines(), "\n"))
			}
			var tok int64
			json.Unmarshal([]byte(f[2]), &tok)
			if tok <= last {
				t.Fatalf("token %d after %d:\n%s", tok, last, strings.Join(lines(), "\n"))
			}
			running, last = f[1], tok
			order = append(order, f[1])
		case "stop":
			running = ""
		}
	}
	if got := strings.Join(order, " "); got != "a b c" {
		t.Errorf("leaders in order %q, want \"a b c\"", got)
	}
}
