package main_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/semaphore"
	"github.com/coord-go/coord/session"
)

func TestStatusGrammar(t *testing.T) {
	t.Parallel()
	root := name(t) + "/"
	n := "nightly"
	// A lock with a holder and a waiter, an election with a leader and a
	// candidate, under a root of the test's own.
	releaseLock, token := holdLockAt(t, root, n)
	defer releaseLock()
	var o2, e2 syncBuffer
	waiter := background(t, &o2, &e2, "lock", "--prefix", root, n, "--", "true")
	eventually(t, 20*time.Second, "waiter queued", func() bool { return len(keysUnder(t, root+"lock/"+n+"/")) == 2 })
	releaseElect := holdElect(t, root, n, "primary")
	defer releaseElect()
	var o3, e3 syncBuffer
	candidate := background(t, &o3, &e3, "elect", "--prefix", root, n, "standby", "--", "true")
	eventually(t, 20*time.Second, "candidate queued", func() bool { return len(keysUnder(t, root+"election/"+n+"/c/")) == 2 })

	// A semaphore nobody uses any more: only its capacity key is left.
	s, err := session.New(context.Background(), srv.Client(), session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	p, err := semaphore.New(s, "idle", 2).Acquire(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	p.Release(context.Background())
	s.Close()

	out, stderr, code := coord(t, "", "status", "--prefix", root)
	if code != 0 {
		t.Fatalf("status: code %d, stderr %q", code, stderr)
	}
	if first := strings.SplitN(out, "\n", 2)[0]; !regexp.MustCompile(`^KIND\s+NAME\s+ROLE\s+TOKEN\s+OWNER\s+TTL\s+AGE\s+DETAIL\s+KEY$`).MatchString(first) {
		t.Errorf("no header row: %q", first)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^lock\s+"nightly"\s+holder\s+` + token + `\s`),
		regexp.MustCompile(`(?m)^lock\s+"nightly"\s+waiter 1\s`),
		regexp.MustCompile(`(?m)^election\s+"nightly"\s+leader\s.*"primary"`),
		regexp.MustCompile(`(?m)^election\s+"nightly"\s+candidate 1\s.*"standby"`),
	} {
		if !want.MatchString(out) {
			t.Errorf("status lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "idle") {
		t.Errorf("status lists the unused semaphore:\n%s", out)
	}

	// --kind alone: every lock and nothing else; with NAME, one primitive.
	out, _, _ = coord(t, "", "status", "--prefix", root, "--kind", "lock")
	if !strings.Contains(out, "lock ") || strings.Contains(out, "election") {
		t.Errorf("--kind lock:\n%s", out)
	}
	// NAME alone: every kind of that name.
	out, _, _ = coord(t, "", "status", "--prefix", root, n)
	if !strings.Contains(out, "lock ") || !strings.Contains(out, "election ") {
		t.Errorf("status NAME:\n%s", out)
	}
	// Asked by kind and name, an unused primitive says so, with its facts.
	out, _, code = coord(t, "", "status", "--prefix", root, "--kind", "semaphore", "idle")
	if code != 0 || !strings.Contains(out, "not in use") || !strings.Contains(out, "capacity=2") {
		t.Errorf("status --kind semaphore idle: code %d\n%s", code, out)
	}
	// The old mistake: a kind's subtree given as the root.
	if _, stderr, code := coord(t, "", "status", "--prefix", root+"lock"); code != 2 || !strings.Contains(stderr, "--kind lock") {
		t.Errorf("status --prefix ROOT/lock: code %d, stderr %q", code, stderr)
	}

	out, _, code = coord(t, "", "status", "--prefix", root, "-o", "json")
	var ps []struct {
		Kind, Name string
		InUse      bool `json:"in_use"`
		Info       map[string]string
		Holders    []struct {
			Key     string
			Token   int64
			Lease   string
			TTLLeft float64 `json:"ttl_left_seconds"`
			Owner   string
			Value   string
			Since   *time.Time
		}
		Waiters []json.RawMessage
	}
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || len(ps) != 2 {
		t.Fatalf("status -o json: code %d, out %s", code, out)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Kind < ps[j].Kind })
	e, l := ps[0], ps[1]
	if e.Kind != "election" || e.Holders[0].Value != "primary" || len(e.Waiters) != 1 ||
		l.Kind != "lock" || len(l.Waiters) != 1 || l.Holders[0].Since == nil || l.Holders[0].TTLLeft <= 0 || l.Holders[0].Lease == "" {
		t.Errorf("status -o json: %s", out)
	}

	releaseLock()
	releaseElect()
	waitCode(t, waiter, 20*time.Second, "lock waiter")
	waitCode(t, candidate, 20*time.Second, "candidate")
	eventually(t, 10*time.Second, "nothing in use", func() bool {
		out, _, _ := coord(t, "", "status", "--prefix", root)
		return strings.HasPrefix(out, "nothing in use under "+root)
	})
}

func holdLockAt(t *testing.T, root, n string) (func(), string) {
	t.Helper()
	dir := t.TempDir()
	started, rel := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o, e syncBuffer
	done := background(t, &o, &e, "lock", "--prefix", root, n, "--", "sh", "-c",
		`echo "$COORD_TOKEN" > "$1.tmp"; mv "$1.tmp" "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, rel)
	eventually(t, 20*time.Second, "holder running", func() bool { return fileExists(started) })
	b, _ := os.ReadFile(started)
	var once bool
	return func() {
		if !once {
			once = true
			os.WriteFile(rel, nil, 0o644)
			waitCode(t, done, 20*time.Second, "holder")
		}
	}, strings.TrimSpace(string(b))
}

func holdElect(t *testing.T, root, n, value string) func() {
	t.Helper()
	dir := t.TempDir()
	started, rel := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	var o, e syncBuffer
	done := background(t, &o, &e, "elect", "--prefix", root, n, value, "--", "sh", "-c",
		`touch "$1"; while [ ! -e "$2" ]; do sleep 0.02; done`, "sh", started, rel)
	eventually(t, 20*time.Second, "leader running", func() bool { return fileExists(started) })
	var once bool
	return func() {
		if !once {
			once = true
			os.WriteFile(rel, nil, 0o644)
			waitCode(t, done, 20*time.Second, "leader")
		}
	}
}

// An endpoint that cannot be reached is reported with the transport's
// reason, within --dial-timeout, by every kind of command.
func TestUnreachableSaysWhy(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	// A listener that accepts and never answers: only the timeout can end
	// the wait.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, c := range []struct {
		ep, want string
		args     []string
	}{
		{refused, "connection refused", []string{"status"}},
		{refused, "connection refused", []string{"lock", "x", "--", "true"}},
		{refused, "connection refused", []string{"queue", "len", "x"}},
		{silent.Addr().String(), "no answer within 500ms", []string{"status"}},
	} {
		start := time.Now()
		args := append(append([]string{}, c.args...), "--endpoints", c.ep, "--dial-timeout", "500ms")
		if c.args[0] == "lock" {
			args = append([]string{"lock", "--endpoints", c.ep, "--dial-timeout", "500ms"}, c.args[1:]...)
		}
		_, stderr, code := coord(t, "", args...)
		if code != 1 || !strings.Contains(stderr, c.want) || !strings.Contains(stderr, c.ep) || strings.Contains(stderr, "context deadline exceeded") {
			t.Errorf("coord %q: code %d, stderr %q; want 1 and %q", args, code, stderr, c.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("coord %q took %s with --dial-timeout 500ms", args, d)
		}
	}
	// leader: cannot reach etcd is 1, not the "no leader" 3.
	if _, _, code := coord(t, "", "leader", "--endpoints", refused, "--dial-timeout", "500ms", "x"); code != 1 {
		t.Errorf("leader with etcd unreachable: code %d, want 1", code)
	}
}

// A TLS server whose CA the client does not trust: the x509 error, not a
// timeout.
func TestTLSMistakeSaysWhy(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.EnableHTTP2 = true // gRPC insists on h2 in the handshake
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	ep := ts.URL // https://127.0.0.1:PORT
	_, stderr, code := coord(t, "", "status", "--endpoints", ep, "--dial-timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "x509: certificate signed by unknown authority") {
		t.Errorf("status against an untrusted TLS server: code %d, stderr %q", code, stderr)
	}
	// Plain http against a TLS port is the other common mistake.
	_, stderr, code = coord(t, "", "status", "--endpoints", strings.TrimPrefix(ep, "https://"), "--dial-timeout", "2s")
	if code != 1 || strings.Contains(stderr, "context deadline exceeded") {
		t.Errorf("status over plain text to a TLS server: code %d, stderr %q", code, stderr)
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	// Each command's flags, from its own -h.
	flags := map[string][]string{}
	for _, cmd := range []string{"lock", "sem", "elect", "leader", "observe", "status", "queue push", "queue claim", "queue len", "queue dead", "version"} {
		_, help, _ := coord(t, "", append(strings.Fields(cmd), "-h")...)
		for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(help, -1) {
			flags[cmd] = append(flags[cmd], m[1])
		}
		if len(flags[cmd]) == 0 {
			t.Fatalf("coord %s -h lists no flags:\n%s", cmd, help)
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, stderr, code := coord(t, "", "completion", sh)
		if code != 0 || len(out) < 200 {
			t.Fatalf("completion %s: code %d, stderr %q", sh, code, stderr)
		}
		// Every command and every flag of its -h is offered.
		for cmd, fl := range flags {
			if !strings.Contains(out, strings.Fields(cmd)[len(strings.Fields(cmd))-1]) {
				t.Errorf("%s completion lacks command %q", sh, cmd)
			}
			for _, f := range fl {
				want := "--" + f
				if len(f) == 1 {
					want = "-" + f
				}
				if sh == "fish" {
					want = "-l " + f
					if len(f) == 1 {
						want = "-s " + f
					}
				}
				if !strings.Contains(out, want) {
					t.Errorf("%s completion lacks %s of %q", sh, want, cmd)
				}
			}
		}
		path, err := exec.LookPath(sh)
		if err != nil {
			t.Logf("%s not installed: syntax not checked", sh)
			continue
		}
		file := filepath.Join(t.TempDir(), "coord."+sh)
		os.WriteFile(file, []byte(out), 0o644)
		if b, err := exec.Command(path, "-n", file).CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", sh, err, b)
		}
	}
	if _, _, code := coord(t, "", "completion", "tcsh"); code != 2 {
		t.Errorf("completion tcsh: code %d, want 2", code)
	}
}

// The bash script really completes: commands, flags, kinds.
func TestBashCompletionCompletes(t *testing.T) {
	t.Parallel()
	script, _, _ := coord(t, "", "completion", "bash")
	file := filepath.Join(t.TempDir(), "coord.bash")
	os.WriteFile(file, []byte(script), 0o644)
	for _, c := range []struct {
		line string
		want string
	}{
		{"coord lo", "lock"},
		{"coord lock --tr", "--try"},
		{"coord status --kind sem", "semaphore"},
		{"coord queue cl", "claim"},
		{"coord queue claim --max", "--max-attempts"},
	} {
		words := strings.Fields(c.line)
		sh := `source "$1"; COMP_WORDS=(` + strings.Join(words, " ") + `); COMP_CWORD=` + strconv.Itoa(len(words)-1) + `; _coord; echo "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", "-c", sh, "bash", file).CombinedOutput()
		if err != nil || !strings.Contains(string(out), c.want) {
			t.Errorf("completing %q: %q %v, want %q", c.line, out, err, c.want)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, stderr, code := coord(t, "", args...)
		if code != 0 || !strings.HasPrefix(out, "coord ") || !strings.Contains(out, "go:") || !strings.Contains(out, "etcd client: v3.") {
			t.Errorf("coord %v: code %d, out %q, stderr %q", args, code, out, stderr)
		}
	}
	out, _, code := coord(t, "", "version", "-o", "json")
	var v struct{ Version, Go string }
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("version -o json: code %d, out %q", code, out)
	}
}
