package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
)

// TestSchedulePauseResume runs two replicas of a 100 ms schedule in this
// process and steers them through the CLI: list and status show it,
// pause stops its runs for the fleet, trigger runs it once while paused,
// resume starts it again, and history shows what ran.
func TestSchedulePauseResume(t *testing.T) {
	t.Parallel()
	n := name(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	var ticks []schedule.Tick
	runs := func() []schedule.Tick {
		mu.Lock()
		defer mu.Unlock()
		return append([]schedule.Tick(nil), ticks...)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, r := range []string{"a", "b"} {
		s, err := session.New(ctx, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sch := schedule.New(srv.Client(), n, schedule.Every(100*time.Millisecond), schedule.WithReplica(r))
		wg.Go(func() {
			sch.Run(ctx, s, func(ctx context.Context, tk schedule.Tick) error {
				mu.Lock()
				ticks = append(ticks, tk)
				mu.Unlock()
				return nil
			})
		})
	}
	eventually(t, 10*time.Second, "3 runs", func() bool { return len(runs()) >= 3 })

	out, stderr, code := coord(t, "", "schedule", "list")
	if code != 0 || !strings.Contains(out, n) || !strings.Contains(out, "every 100ms") || !strings.Contains(out, "active") {
		t.Fatalf("schedule list: code %d\n%s%s", code, out, stderr)
	}
	out, _, code = coord(t, "", "status", "--kind", "schedule", n)
	if code != 0 || !strings.Contains(out, "replica 1") || !strings.Contains(out, `spec="every 100ms"`) {
		t.Errorf("status --kind schedule: code %d\n%s", code, out)
	}

	if out, stderr, code := coord(t, "", "schedule", "pause", n); code != 0 || !strings.Contains(out, "paused") {
		t.Fatalf("pause: code %d %s%s", code, out, stderr)
	}
	// Runs stop (one claimed just before the pause may still start), and
	// ticks are skipped as paused.
	paused := len(runs())
	status := func() schedule.Status {
		st, _ := schedule.New(srv.Client(), n, schedule.Every(time.Second)).Status(ctx)
		return st
	}
	eventually(t, 10*time.Second, "3 ticks skipped as paused", func() bool { return status().Skipped[schedule.SkipPaused] >= 3 })
	if got := len(runs()); got > paused+1 {
		t.Errorf("%d runs while paused", got-paused)
	}
	if out, stderr, code := coord(t, "", "schedule", "trigger", n); code != 0 || !strings.Contains(out, "triggered") {
		t.Fatalf("trigger: code %d %s%s", code, out, stderr)
	}
	eventually(t, 10*time.Second, "the triggered run", func() bool {
		rs := runs()
		return len(rs) > 0 && rs[len(rs)-1].Trigger
	})
	before := len(runs())
	if out, stderr, code := coord(t, "", "schedule", "resume", n); code != 0 || !strings.Contains(out, "resumed") {
		t.Fatalf("resume: code %d %s%s", code, out, stderr)
	}
	eventually(t, 10*time.Second, "runs after resume", func() bool { return len(runs()) >= before+2 })

	out, _, code = coord(t, "", "schedule", "history", n, "-o", "json")
	var hist []struct {
		Seq     int64  `json:"seq"`
		Outcome string `json:"outcome"`
		Trigger bool   `json:"trigger"`
		Replica string `json:"replica"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &hist) != nil || len(hist) < 3 {
		t.Fatalf("history -o json: code %d\n%s", code, out)
	}
	triggered := false
	for i, h := range hist {
		if i > 0 && h.Seq >= hist[i-1].Seq {
			t.Errorf("history not newest first: %+v", hist)
		}
		triggered = triggered || h.Trigger
	}
	if !triggered {
		t.Errorf("history lacks the triggered run: %s", out)
	}
	out, _, code = coord(t, "", "schedule", "history", n)
	if code != 0 || !strings.Contains(out, "(trigger)") || !strings.Contains(out, "succeeded") {
		t.Errorf("history: code %d\n%s", code, out)
	}
}

func TestScheduleUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"schedule"}, 2, "subcommands:"},
		{[]string{"schedule", "nosuch"}, 2, "unknown subcommand"},
		{[]string{"schedule", "pause"}, 2, "want NAME"},
		{[]string{"schedule", "list", "x"}, 2, "takes no arguments"},
		{[]string{"schedule", "history", ""}, 2, "empty"},
		{[]string{"schedule", "pause", "x", "-o", "yaml"}, 2, "want text or json"},
		{[]string{"schedule", "pause", "never-ran-" + name(t)}, 1, "no replica ever ran it"},
		{[]string{"schedule", "trigger", "never-ran-" + name(t)}, 1, "no replica ever ran it"},
	} {
		_, stderr, code := coord(t, "", tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("coord %q: code %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.want)
		}
	}
	if _, stderr, code := coord(t, "", "schedule", "history", "-h"); code != 0 || !strings.Contains(stderr, "usage: coord schedule history") {
		t.Errorf("history -h: %d %q", code, stderr)
	}
}
