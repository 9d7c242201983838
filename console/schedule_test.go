package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/console"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/schedule"
)

func TestScheduleActions(t *testing.T) {
	t.Parallel()
	s := serve(t, nil, console.WithActions(true))
	ss := newSession(t, s.root)
	bg, cancel := context.WithCancel(context.Background())
	defer cancel()
	sc := schedule.New(srv.Client(), "report", schedule.Every(time.Second), schedule.WithPrefix(s.root))
	ran := make(chan schedule.Tick, 64)
	go sc.Run(bg, ss, func(ctx context.Context, tk schedule.Tick) error {
		ran <- tk
		return nil
	})
	// A schedule's state exists once a replica ran it: wait for it on
	// the page.
	page := s.waitPage(t, "/", "the schedule", func(p string) bool {
		return strings.Contains(p, `data-name="report"`) && strings.Contains(p, `data-info="state">active<`)
	})
	csrf := csrfRE.FindStringSubmatch(page)[1]
	post := func(op string) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.URL+"/action", strings.NewReader(url.Values{"csrf": {csrf}, "op": {op}, "kind": {"schedule"}, "name": {"report"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d", op, resp.StatusCode)
		}
	}
	post("pause")
	s.waitPage(t, "/", "paused", func(p string) bool {
		return strings.Contains(p, `data-info="state">paused by`) && strings.Contains(p, `value="resume"`)
	})
	post("resume")
	s.waitPage(t, "/", "active again", func(p string) bool { return strings.Contains(p, `data-info="state">active<`) })
	post("trigger")
	ctx := etcdtest.Context(t, 20*time.Second)
	for {
		select {
		case tk := <-ran:
			if tk.Trigger {
				if l := s.log.String(); !strings.Contains(l, "action=pause") || !strings.Contains(l, "action=trigger") {
					t.Errorf("no audit lines: %s", l)
				}
				return
			}
		case <-ctx.Done():
			t.Fatal("the trigger never ran")
		}
	}
}

// A console mounted under a prefix redirects the bare prefix to the page,
// whose links are relative.
func TestMountedUnderAPrefix(t *testing.T) {
	t.Parallel()
	c, err := console.New(srv.Client(), console.WithPrefix(strings.ToLower(etcdtest.Name(t))+"/"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/coord/", http.StripPrefix("/debug/coord", c))
	mux.Handle("/debug/coord", http.StripPrefix("/debug/coord", c))
	s := &served{Server: newServer(t, mux)}
	for _, path := range []string{"/debug/coord", "/debug/coord/", "/debug/coord/static/console.js", "/debug/coord/state"} {
		if code, body := s.get(t, path); code != 200 || len(body) == 0 {
			t.Errorf("GET %s: %d", path, code)
		}
	}
}

// When the client is closed, the page says the state is stale, and the
// event streams end.
func TestClosedClientSaysSo(t *testing.T) {
	t.Parallel()
	cli := etcdtest.NewTestClient(t, srv.Endpoints())
	s := serve(t, cli)
	s.waitPage(t, "/", "the first state", func(p string) bool { return strings.Contains(p, "Nothing in use") })
	cli.Close()
	s.waitPage(t, "/", "the error", func(p string) bool { return strings.Contains(p, "Showing the last state read") })
}
