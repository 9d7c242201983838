package console_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/console"
	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/semaphore"
)

func TestPageShowsEveryKindInUse(t *testing.T) {
	t.Parallel()
	s := serve(t, nil, console.WithRows(2))
	ctx := etcdtest.Context(t, 20*time.Second)
	ss := newSession(t, s.root)
	m := lock.NewMutex(ss, "backup")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	e := election.New(ss, "api")
	if err := e.Campaign(ctx, "node-a"); err != nil {
		t.Fatal(err)
	}
	sem := semaphore.New(ss, "gpu", 4)
	if _, err := sem.Acquire(ctx, 3); err != nil {
		t.Fatal(err)
	}
	// Five waiters on a lock of three rows... with rows=2: two shown, the
	// rest counted.
	for range 4 {
		w := lock.NewMutex(newSession(t, s.root), "busy")
		go w.Lock(ctx)
	}
	id := deadLetter(t, s.root, "jobs", `{"job":1}`, "bad input")

	page := s.waitPage(t, "/", "every primitive", func(p string) bool {
		return strings.Contains(p, `data-name="backup"`) && strings.Contains(p, `data-name="api"`) &&
			strings.Contains(p, `data-name="gpu"`) && strings.Contains(p, id) && strings.Contains(p, "and 1 more waiting")
	})
	for _, want := range []string{
		`data-token="` + strconv.FormatInt(m.Token(), 10) + `"`, // the lock's holder, with its token
		`data-token="` + strconv.FormatInt(e.Token(), 10) + `"`, // the leader
		"node-a", "3 permits", `data-info="in use">3<`, `data-info="capacity">4<`,
		`data-info="dead">1<`, "bad input", `{&#34;job&#34;:1}`,
		"read-only",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<button") || strings.Contains(page, "<form") {
		t.Error("a read-only page shows actions")
	}
	// The fragment the script swaps in is the same state.
	if _, st := s.get(t, "/state"); !strings.HasPrefix(st, `<main id="state"`) || !strings.Contains(st, `data-name="backup"`) {
		t.Errorf("bad fragment:\n%s", st)
	}
}

func TestReadOnlyRefusesPosts(t *testing.T) {
	t.Parallel()
	s := serve(t, nil)
	resp, err := http.PostForm(s.URL+"/action", url.Values{"op": {"redrive"}, "kind": {"queue"}, "name": {"q"}, "id": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), console.ErrReadOnly.Error()) {
		t.Fatalf("POST to a read-only console: %d %s", resp.StatusCode, b)
	}
	if code, _ := s.get(t, "/action"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /action: %d, want 405", code)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

func TestActionsNeedTheFormTokenAndSameOrigin(t *testing.T) {
	t.Parallel()
	s := serve(t, nil, console.WithActions(true))
	id := deadLetter(t, s.root, "jobs", "p", "r")
	page := s.waitPage(t, "/", "the dead letter", func(p string) bool { return strings.Contains(p, id) })
	tok := csrfRE.FindStringSubmatch(page)
	if tok == nil {
		t.Fatal("no form token on the page")
	}
	form := url.Values{"op": {"redrive"}, "kind": {"queue"}, "name": {"jobs"}, "id": {id}}
	post := func(f url.Values, origin string) int {
		req, _ := http.NewRequest("POST", s.URL+"/action", strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultTransport.RoundTrip(req) // no redirects followed
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(form, ""); code != http.StatusForbidden {
		t.Errorf("without the token: %d, want 403", code)
	}
	form.Set("csrf", tok[1])
	if code := post(form, "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("from another origin: %d, want 403", code)
	}
	if code := post(form, s.URL); code != http.StatusSeeOther {
		t.Errorf("same origin with the token: %d, want 303", code)
	}
	st, err := queue.New(srv.Client(), "jobs", queue.WithPrefix(s.root)).Stats(etcdtest.Context(t, 5*time.Second))
	if err != nil || st.Dead != 0 || st.Ready != 1 {
		t.Fatalf("after re-drive: %+v, %v", st, err)
	}
	if l := s.log.String(); !strings.Contains(l, "action=redrive") || !strings.Contains(l, id) {
		t.Errorf("no audit line: %s", l)
	}
	// A second re-drive of the same letter fails, and says so.
	if code := post(form, s.URL); code != http.StatusConflict {
		t.Errorf("re-drive of a letter no longer dead: %d, want 409", code)
	}
}

func TestForceReleaseConfirmsAndRevokesTheHoldersLease(t *testing.T) {
	t.Parallel()
	s := serve(t, nil, console.WithActions(true))
	ctx := etcdtest.Context(t, 20*time.Second)
	ss := newSession(t, s.root)
	m := lock.NewMutex(ss, "stuck")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	tokStr := strconv.FormatInt(m.Token(), 10)
	page := s.waitPage(t, "/", "the holder", func(p string) bool { return strings.Contains(p, `data-token="`+tokStr+`"`) })
	csrf := csrfRE.FindStringSubmatch(page)[1]
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(f url.Values) (int, string) {
		resp, err := client.PostForm(s.URL+"/action", f)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	lease := strconv.FormatInt(int64(ss.Lease()), 16)
	form := url.Values{"csrf": {csrf}, "op": {"release"}, "kind": {"lock"}, "name": {"stuck"},
		"key": {m.Key()}, "token": {tokStr}, "lease": {lease}}
	// A stale token (another holder's) revokes nothing.
	stale := url.Values{}
	for k, v := range form {
		stale[k] = v
	}
	stale.Set("token", strconv.FormatInt(m.Token()-1, 10))
	stale.Set("confirm", "yes")
	if code, body := post(stale); code != http.StatusConflict || !strings.Contains(body, "nothing was revoked") {
		t.Fatalf("stale release: %d\n%s", code, body)
	}
	// First a confirmation page, which changes nothing.
	code, body := post(form)
	if code != http.StatusOK || !strings.Contains(body, `name="confirm" value="yes"`) || !strings.Contains(body, tokStr) {
		t.Fatalf("release without confirm: %d\n%s", code, body)
	}
	select {
	case <-m.Done():
		t.Fatal("the lock was lost before the release was confirmed")
	default:
	}
	form.Set("confirm", "yes")
	if code, body := post(form); code != http.StatusSeeOther {
		t.Fatalf("confirmed release: %d\n%s", code, body)
	}
	select {
	case <-m.Done():
	case <-ctx.Done():
		t.Fatal("the holder never saw its lock lost")
	}
	if l := s.log.String(); !strings.Contains(l, "action=release") || !strings.Contains(l, "token="+tokStr) || !strings.Contains(l, "lease="+lease) {
		t.Errorf("audit line lacks who/what/token: %s", l)
	}
	s.waitPage(t, "/", "the lock gone", func(p string) bool { return !strings.Contains(p, `data-name="stuck"`) })
}

func TestBadOptions(t *testing.T) {
	for _, o := range []console.Option{console.WithPrefix(""), console.WithPrefix("a\xffb/"), console.WithRows(0), console.WithLogger(nil)} {
		if _, err := console.New(srv.Client(), o); err == nil {
			t.Error("a bad option was accepted")
		}
	}
}

func TestDiscardAsksFirst(t *testing.T) {
	t.Parallel()
	s := serve(t, nil, console.WithActions(true))
	id := deadLetter(t, s.root, "jobs", "p", "r")
	page := s.waitPage(t, "/", "the dead letter", func(p string) bool { return strings.Contains(p, id) })
	form := url.Values{"csrf": {csrfRE.FindStringSubmatch(page)[1]}, "op": {"discard"}, "kind": {"queue"}, "name": {"jobs"}, "id": {id}}
	q := queue.New(srv.Client(), "jobs", queue.WithPrefix(s.root))
	ctx := etcdtest.Context(t, 10*time.Second)
	resp, err := http.PostForm(s.URL+"/action", form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if st, _ := q.Stats(ctx); resp.StatusCode != 200 || !strings.Contains(string(b), `id="confirm"`) || st.Dead != 1 {
		t.Fatalf("discard without confirm: %d, %+v\n%s", resp.StatusCode, st, b)
	}
	form.Set("confirm", "yes")
	resp, err = http.PostForm(s.URL+"/action", form) // follows the redirect to the page
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if st, _ := q.Stats(ctx); resp.StatusCode != 200 || !strings.Contains(string(b), "Discarded the dead letter") || st.Dead != 0 || st.Ready != 0 {
		t.Fatalf("confirmed discard: %d, %+v\n%s", resp.StatusCode, st, b)
	}
}
