package main_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// coord ui serves the console on loopback, prints its URL, shows what is
// held, and stops cleanly on Ctrl-C, also with a viewer's event stream
// open.
func TestUIServesAndStopsOnInterrupt(t *testing.T) {
	t.Parallel()
	root := name(t) + "/"
	release, token := holdLockAt(t, root, "nightly")
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := command(ctx, "ui", "--prefix", root, "--listen", "127.0.0.1:0")
	var o, e syncBuffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	urlRE := regexp.MustCompile(`at (http://127\.0\.0\.1:\d+/) `)
	eventually(t, 20*time.Second, "the URL printed", func() bool { return urlRE.MatchString(o.String()) })
	url := urlRE.FindStringSubmatch(o.String())[1]
	if !strings.Contains(o.String(), "read-only") {
		t.Errorf("no read-only mode said: %q", o.String())
	}
	page := func() string {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	eventually(t, 20*time.Second, "the lock and its token on the page", func() bool {
		p := page()
		return strings.Contains(p, `data-name="nightly"`) && strings.Contains(p, `data-token="`+token+`"`)
	})
	// A viewer's stream stays open until the console stops.
	resp, err := http.Get(url + "events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("coord ui after Ctrl-C: %v; stderr %s", err, e.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("coord ui did not stop on Ctrl-C")
	}
	if _, err := io.ReadAll(resp.Body); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Logf("event stream ended with %v", err)
	}
}

func TestUIUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"ui", "extra"}, {"ui", "--listen", "nope"}, {"ui", "--prefix", "coord/lock"}, {"ui", "--bogus"}} {
		if _, stderr, code := coord(t, "", args...); code != 2 {
			t.Errorf("coord %v: code %d, want 2 (%s)", args, code, stderr)
		}
	}
}
