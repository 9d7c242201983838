package console_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coord-go/coord/console"
)

var screenshots = flag.String("screenshots", "", "write PNGs of the console, with realistic data, to this directory (go test ./console -run TestScreenshots -args -screenshots=../docs)")

// TestScreenshots renders the console in Chromium and saves the PNGs the
// README shows. It runs only when asked for with -screenshots.
func TestScreenshots(t *testing.T) {
	if *screenshots == "" {
		t.Skip("pass -args -screenshots=DIR to write them")
	}
	ctx := browser(t, 1200, 900)
	// The default root, as on a real fleet's console (the package's
	// server is fresh for this run).
	s := serve(t, nil, console.WithActions(true), console.WithRows(5), console.WithPrefix("coord/"))
	scene(t, "coord/")
	s.waitPage(t, "/", "the whole scene", func(p string) bool {
		return strings.Contains(p, `data-name="nightly-report"`) && strings.Contains(p, `data-info="dead">3<`) &&
			strings.Contains(p, `data-name="workers"`) && strings.Count(p, `class="waiter"`) >= 5
	})
	step(t, ctx, "open the console", chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`article[data-name="emails"] tr.deadletter`)))
	waitJS(t, ctx, "the page live", `document.getElementById("live").textContent === "live"`)
	shot := func(file string, a chromedp.Action[[]byte]) {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(*screenshots, file), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d KB", file, len(png)>>10)
	}
	shot("console.png", chromedp.CaptureScreenshot())
	shot("console-queue.png", chromedp.Screenshot(chromedp.CSS(`article[data-kind="queue"][data-name="emails"]`)))
}
