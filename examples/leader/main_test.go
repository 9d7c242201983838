package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// lineLog collects what run prints, line by line, and lets a test wait
// for a line.
type lineLog struct {
	mu      sync.Mutex
	buf     string
	lines   []string
	changed chan struct{}
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf += string(p)
	for {
		i := strings.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lineLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// wait returns the index and submatches of the first line at or after
// index from that matches re, failing the test after timeout.
func (l *lineLog) wait(t *testing.T, re *regexp.Regexp, from int, timeout time.Duration) (int, []string) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		for i := from; i < len(l.lines); i++ {
			if m := re.FindStringSubmatch(l.lines[i]); m != nil {
				l.mu.Unlock()
				return i, m
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no line matching %q within %v; output:\n%s", re, timeout, strings.Join(l.snapshot(), "\n"))
		}
	}
}

var (
	leadingRe = regexp.MustCompile(`(\S+): leading \(token (\d+)\)$`)
	lostRe    = regexp.MustCompile(`(\S+): no longer leading`)
	workRe    = regexp.MustCompile(`(\S+): leader-only work #\d+ \(token (\d+)\)$`)
)

// checkOneLeader replays the output and fails if two replicas ever
// worked as leader at once, or a replica worked without leading.
func checkOneLeader(t *testing.T, lines []string) {
	t.Helper()
	current := ""
	for i, line := range lines {
		switch {
		case leadingRe.MatchString(line):
			id := leadingRe.FindStringSubmatch(line)[1]
			if current != "" {
				t.Errorf("line %d: %s leads while %s still does: %s", i, id, current, line)
			}
			current = id
		case lostRe.MatchString(line):
			id := lostRe.FindStringSubmatch(line)[1]
			if current != id {
				t.Errorf("line %d: %s stops leading but %q leads: %s", i, id, current, line)
			}
			current = ""
		case workRe.MatchString(line):
			if id := workRe.FindStringSubmatch(line)[1]; id != current {
				t.Errorf("line %d: %s works while %q leads: %s", i, id, current, line)
			}
		}
	}
}

type replica struct {
	id     string
	url    string
	proxy  *etcdtest.Proxy
	cancel context.CancelFunc
	done   chan error
}

func getJSON(url string) (leaderJSON, int, error) {
	var l leaderJSON
	resp, err := http.Get(url)
	if err != nil {
		return l, 0, err
	}
	defer resp.Body.Close()
	return l, resp.StatusCode, json.NewDecoder(resp.Body).Decode(&l)
}

// TestFailover runs three replicas as separate run calls, each reaching
// etcd through its own proxy so that one can be cut off as in a crash.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 6 s leader TTL; run without -short")
	}
	t.Parallel()
	srv := etcdtest.NewServer(t, etcdtest.WithoutFsync())
	name := fmt.Sprintf("leader-test-%d", time.Now().UnixNano())
	const ttl = 6 * time.Second
	log := newLineLog()
	reps := map[string]*replica{}
	for i := 1; i <= 3; i++ {
		r := &replica{id: fmt.Sprintf("r%d", i), proxy: etcdtest.NewProxy(t, srv.Endpoints()[0]), done: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() {
			r.done <- run(ctx, []string{"-endpoints", r.proxy.Addr(), "-addr", "127.0.0.1:0", "-id", r.id,
				"-name", name, "-ttl", ttl.String(), "-work", "100ms"}, log)
		}()
		_, m := log.wait(t, regexp.MustCompile(r.id+`: serving (http://\S+)$`), 0, 10*time.Second)
		r.url = m[1]
		reps[r.id] = r
	}
	t.Cleanup(func() {
		for _, r := range reps {
			r.proxy.Restore()
			r.cancel()
		}
		for _, r := range reps {
			select {
			case err := <-r.done:
				if err != nil {
					t.Errorf("%s: run: %v", r.id, err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s: run did not return within 15s of its ctx ending", r.id)
			}
		}
		checkOneLeader(t, log.snapshot())
	})

	i, m := log.wait(t, leadingRe, 0, 10*time.Second)
	first := reps[m[1]]
	log.wait(t, regexp.MustCompile(first.id+`: leader-only work`), i, 5*time.Second)

	// Every replica names the leader on /leader and is healthy.
	for _, r := range reps {
		deadline := time.Now().Add(5 * time.Second)
		for {
			l, code, err := getJSON(r.url + "/leader")
			if err == nil && code == http.StatusOK && l.Leader == first.id && l.Self == r.id && l.Token > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s /leader: %+v, %d, %v; want leader %s", r.id, l, code, err, first.id)
			}
			time.Sleep(20 * time.Millisecond) // polling an HTTP endpoint; no event to wait on
		}
		resp, err := http.Get(r.url + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
			t.Fatalf("%s /healthz: %d %q", r.id, resp.StatusCode, body)
		}
	}

	// A clean shutdown resigns: another replica leads in far less than
	// the TTL, which is what a crash would cost.
	stopped := time.Now()
	first.cancel()
	if err := <-first.done; err != nil {
		t.Fatalf("%s: run: %v", first.id, err)
	}
	delete(reps, first.id)
	i, m = log.wait(t, leadingRe, i+1, ttl/2)
	second := reps[m[1]]
	if second == nil {
		t.Fatalf("after %s stopped, %s leads", first.id, m[1])
	}
	t.Logf("clean failover %s -> %s in %v", first.id, second.id, time.Since(stopped))
	log.wait(t, regexp.MustCompile(second.id+`: leader-only work`), i, 5*time.Second)

	// A leader cut off from etcd stops its work when its session
	// expires, and only then does another replica lead: within the TTL.
	cut := time.Now()
	second.proxy.Blackhole()
	j, _ := log.wait(t, regexp.MustCompile(second.id+`: no longer leading`), i, ttl+5*time.Second)
	k, m := log.wait(t, leadingRe, i+1, ttl+5*time.Second)
	if m[1] == second.id {
		t.Fatalf("the cut-off replica leads again: %s", log.snapshot()[k])
	}
	if j > k {
		t.Fatalf("%s led before the cut-off %s stopped working", m[1], second.id)
	}
	t.Logf("crash failover %s -> %s in %v", second.id, m[1], time.Since(cut))
	log.wait(t, regexp.MustCompile(m[1]+`: leader-only work`), k, 5*time.Second)
}

// TestEmbedded runs the default: three replicas on an embedded etcd.
func TestEmbedded(t *testing.T) {
	t.Parallel()
	log := newLineLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-id", "e", "-work", "50ms"}, log) }()
	for i := 1; i <= 3; i++ {
		log.wait(t, regexp.MustCompile(fmt.Sprintf(`e-%d: serving`, i)), 0, 15*time.Second)
	}
	i, _ := log.wait(t, leadingRe, 0, 10*time.Second)
	log.wait(t, workRe, i, 5*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return within 15s of its ctx ending")
	}
	checkOneLeader(t, log.snapshot())
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-addr", "nope"}, {"-ttl", "soon"}, {"-no-such-flag"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}
