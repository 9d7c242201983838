package console_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coord-go/coord/console"
	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
)

// chromiumPath is where Debian's chromium package puts the browser (CI
// installs it; see .ci/run).
const chromiumPath = "/usr/bin/chromium"

// browser returns a chromedp context driving a fresh headless Chromium,
// closed when the test ends. Without Chromium the test is skipped, unless
// COORD_REQUIRE_CHROMIUM is set (as in CI), when it fails.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("COORD_REQUIRE_CHROMIUM") != "" {
			t.Fatalf("COORD_REQUIRE_CHROMIUM is set and %s is missing: %v", chromiumPath, err)
		}
		t.Skipf("no Chromium at %s (apt-get install chromium)", chromiumPath)
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelA()
	})
	// Start the browser now, with a context of no deadline: the first Run's
	// context is the browser's life.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs actions with a deadline, failing the test with what.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitJS waits until the expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	step(t, ctx, what, chromedp.Action[chromedp.Void](chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(10*time.Second))))
}

// TestBrowser drives the page in a real Chromium: a held lock shows with
// its token; the page follows, without a reload, the lock's release and
// an election's new leader after a transfer; a Re-drive button puts a
// dead letter back in line.
func TestBrowser(t *testing.T) {
	ctx := browser(t, 1280, 900)
	s := serve(t, nil, console.WithActions(true))
	ectx := etcdtest.Context(t, 60*time.Second)
	ss := newSession(t, s.root)
	m := lock.NewMutex(ss, "backup")
	if err := m.Lock(ectx); err != nil {
		t.Fatal(err)
	}
	lead := election.New(ss, "api")
	if err := lead.Campaign(ectx, "node-a"); err != nil {
		t.Fatal(err)
	}
	// Two standbys: the transfer goes to the second in line, so the page
	// must show the one chosen, not just the next.
	standby := election.New(newSession(t, s.root), "api")
	go standby.Campaign(ectx, "node-b")
	next := election.New(newSession(t, s.root), "api")
	elected := make(chan error, 1)
	go func() { elected <- next.Campaign(ectx, "node-c") }()
	id := deadLetter(t, s.root, "emails", `{"to":"ops@example.com"}`, "smtp: 550 mailbox unavailable")

	lockSel := `article[data-kind="lock"][data-name="backup"]`
	step(t, ctx, "open the console", chromedp.Navigate(s.URL+"/"), chromedp.WaitVisible(chromedp.CSS(lockSel+` tr.holder td.token`)))
	if got, want := text(t, ctx, lockSel+` tr.holder td.token`), strconv.FormatInt(m.Token(), 10); got != want {
		t.Fatalf("the lock's token on the page: %q, want %q", got, want)
	}
	waitJS(t, ctx, "the page live", `document.getElementById("live").textContent === "live"`)
	// A mark that a reload would wipe out.
	step(t, ctx, "mark the page", chromedp.Action[chromedp.Void](chromedp.Evaluate[chromedp.Void](`window.coordMark = 1`)))

	if err := m.Unlock(ectx); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the released lock gone, without a reload", `!document.querySelector('`+lockSel+`') && window.coordMark === 1`)

	candSel := `article[data-kind="election"][data-name="api"]`
	waitJS(t, ctx, "both candidates in line", `document.querySelectorAll('`+candSel+` tr.waiter').length === 2`)
	if err := lead.Transfer(ectx, "node-c"); err != nil {
		t.Fatal(err)
	}
	if err := <-elected; err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the new leader, without a reload",
		`(document.querySelector('`+candSel+` tr.holder td.detail') || {}).textContent === "node-c" && window.coordMark === 1`)
	if got, want := text(t, ctx, candSel+` tr.holder td.token`), strconv.FormatInt(next.Token(), 10); got != want {
		t.Errorf("the new leader's token: %q, want %q", got, want)
	}

	deadSel := `tr.deadletter[data-id="` + id + `"]`
	if got := text(t, ctx, deadSel+` td.reason`); got != "smtp: 550 mailbox unavailable" {
		t.Errorf("dead letter reason: %q", got)
	}
	step(t, ctx, "re-drive the dead letter", chromedp.Click(chromedp.CSS(deadSel+` button[value="redrive"]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.msg`)))
	st, err := queue.New(srv.Client(), "emails", queue.WithPrefix(s.root)).Stats(ectx)
	if err != nil || st.Dead != 0 || st.Ready != 1 {
		t.Fatalf("after the click: %+v, %v; want 1 ready, 0 dead", st, err)
	}
	waitJS(t, ctx, "the dead letter gone from the page", `!document.querySelector('`+deadSel+`')`)
}
