package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holdLock runs a lock holder in the background until the test ends or
// release is called, and returns once it holds.
func holdLock(t *testing.T, n string) (release func(), token string) {
	t.Helper()
	dir := t.TempDir()
	started, rel := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o, e syncBuffer
	done := background(t, &o, &e, "lock", n, "--", "sh", "-c",
		`echo "$COORD_TOKEN" > "$1.tmp"; mv "$1.tmp" "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, rel)
	eventually(t, 20*time.Second, "holder running", func() bool { return fileExists(started) })
	b, _ := os.ReadFile(started)
	return func() {
		os.WriteFile(rel, nil, 0o644)
		waitCode(t, done, 20*time.Second, "holder")
	}, strings.TrimSpace(string(b))
}

func TestLockWaitBounded(t *testing.T) {
	t.Parallel()
	n := name(t)
	release, _ := holdLock(t, n)
	defer release()
	start := time.Now()
	_, stderr, code := coord(t, "", "lock", "--wait", "500ms", n, "--", "sh", "-c", "echo ran; exit 9")
	if code != 75 || !strings.Contains(stderr, "after 500ms") {
		t.Errorf("--wait on a held lock: code %d, stderr %q; want 75", code, stderr)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 10*time.Second {
		t.Errorf("--wait 500ms returned after %s", d)
	}
	// The waiter left the line: only the holder's key is there.
	if kvs := keysUnder(t, "coord/lock/"+n+"/"); len(kvs) != 1 {
		t.Errorf("keys after the bounded wait: %v", kvs)
	}
	if _, _, code := coord(t, "", "lock", "--try", "--conflict-exit", "9", n, "--", "true"); code != 9 {
		t.Errorf("--try --conflict-exit 9: code %d", code)
	}
	// A free lock within --wait runs CMD as usual.
	if _, stderr, code := coord(t, "", "lock", "--wait", "5s", name(t), "--", "sh", "-c", "exit 4"); code != 4 {
		t.Errorf("--wait on a free lock: code %d, stderr %q; want the child's 4", code, stderr)
	}
}

func TestSemAndElectWaitBounded(t *testing.T) {
	t.Parallel()
	n := name(t)
	dir := t.TempDir()
	started, rel := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o, e syncBuffer
	holder := background(t, &o, &e, "elect", n, "first", "--", "sh", "-c",
		`touch "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, rel)
	eventually(t, 20*time.Second, "leader running", func() bool { return fileExists(started) })
	if _, stderr, code := coord(t, "", "elect", "--wait", "300ms", n, "second", "--", "true"); code != 75 || !strings.Contains(stderr, "not leading after 300ms") {
		t.Errorf("elect --wait: code %d, stderr %q", code, stderr)
	}
	if _, stderr, code := coord(t, "", "sem", "--wait", "300ms", "--capacity", "1", n, "--", "true"); code != 0 {
		t.Errorf("sem --wait with free permits: code %d, stderr %q", code, stderr)
	}
	os.WriteFile(rel, nil, 0o644)
	waitCode(t, holder, 20*time.Second, "leader")
}

func TestLeaderAndObserveJSON(t *testing.T) {
	t.Parallel()
	n := name(t)
	var obsOut, obsErr syncBuffer
	background(t, &obsOut, &obsErr, "observe", "-o", "json", n)
	out, _, code := coord(t, "", "leader", "-o", "json", n)
	var l struct {
		Election string
		Leader   bool
		Value    string
		Token    int64
	}
	if code != 3 || json.Unmarshal([]byte(out), &l) != nil || l.Leader || l.Election != n {
		t.Errorf("leader -o json with none: code %d, out %q", code, out)
	}
	dir := t.TempDir()
	started, rel := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o, e syncBuffer
	done := background(t, &o, &e, "elect", n, "v1", "--", "sh", "-c",
		`echo "$COORD_TOKEN" > "$1.tmp"; mv "$1.tmp" "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, rel)
	eventually(t, 20*time.Second, "leading", func() bool { return fileExists(started) })
	b, _ := os.ReadFile(started)
	token, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	out, _, code = coord(t, "", "leader", "-o", "json", n)
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || !l.Leader || l.Value != "v1" || l.Token != token {
		t.Errorf("leader -o json: code %d, out %q, want v1 token %d", code, out, token)
	}
	// observe printed "no leader", then the leader: JSON Lines.
	eventually(t, 20*time.Second, "observe saw the leader", func() bool { return strings.Count(obsOut.String(), "\n") >= 2 })
	lines := strings.Split(strings.TrimSpace(obsOut.String()), "\n")
	var first, second struct {
		Time   string
		Leader bool
		Value  string
		Token  int64
	}
	if json.Unmarshal([]byte(lines[0]), &first) != nil || first.Leader || first.Time == "" ||
		json.Unmarshal([]byte(lines[1]), &second) != nil || !second.Leader || second.Value != "v1" || second.Token != token {
		t.Errorf("observe -o json:\n%s", obsOut.String())
	}
	os.WriteFile(rel, nil, 0o644)
	waitCode(t, done, 20*time.Second, "elect")
}

func TestQueueJSON(t *testing.T) {
	t.Parallel()
	n := name(t)
	id, _, _ := coord(t, "", "queue", "push", n, "héllo")
	id = strings.TrimSpace(id)
	coord(t, "\xff\xfe", "queue", "push", n) // not UTF-8
	out, _, code := coord(t, "", "queue", "len", "-o", "json", n)
	var st struct {
		Queue                         string
		Ready, Claimed, Delayed, Dead int64
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Ready != 2 || st.Queue != n {
		t.Errorf("len -o json: code %d, out %q", code, out)
	}
	out, _, code = coord(t, "", "queue", "claim", "-o", "json", n)
	var m struct {
		ID            string
		Attempt       int
		Token         int64
		Payload       *string
		PayloadBase64 []byte `json:"payload_base64"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &m) != nil || m.ID != id || m.Attempt != 1 || m.Token <= 0 || m.Payload == nil || *m.Payload != "héllo" {
		t.Errorf("claim -o json: code %d, out %q", code, out)
	}
	// A payload that is not text comes only as base64.
	if _, _, code := coord(t, "", "queue", "claim", "--max-attempts", "1", n, "--", "false"); code != 1 {
		t.Errorf("failing CMD: code %d", code)
	}
	out, _, code = coord(t, "", "queue", "dead", "-o", "json", n)
	var dead []struct {
		ID            string
		Attempts      int
		Payload       *string
		PayloadBase64 []byte `json:"payload_base64"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &dead) != nil || len(dead) != 1 || dead[0].Payload != nil || string(dead[0].PayloadBase64) != "\xff\xfe" {
		t.Errorf("dead -o json: code %d, out %q", code, out)
	}
	if _, stderr, code := coord(t, "", "queue", "claim", "-o", "json", n, "--", "true"); code != 2 {
		t.Errorf("claim -o json with CMD: code %d, stderr %q; want a usage error", code, stderr)
	}
}
