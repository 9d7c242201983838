package fence_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/fence"
)

// fencedServer serves writes behind Middleware on store, recording the
// tokens its handler ran with, in order.
type fencedServer struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []int64
}

func newFencedServer(t *testing.T, store fence.Store, opts ...fence.ServerOption) *fencedServer {
	fs := &fencedServer{}
	h := fence.Middleware(store, opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tok, ok := fence.FromContext(r.Context())
		if !ok {
			http.Error(w, "no checked token in the context", http.StatusInternalServerError)
			return
		}
		fs.mu.Lock()
		fs.tokens = append(fs.tokens, tok)
		fs.mu.Unlock()
		io.WriteString(w, "written")
	}))
	fs.Server = httptest.NewServer(h)
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fencedServer) written() []int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.tokens)
}

// post sends a write with token through a Transport.
func post(t *testing.T, url, resource string, token int64) (*http.Response, string, error) {
	t.Helper()
	c := &http.Client{Transport: &fence.Transport{Resource: resource, Token: func() int64 { return token }}}
	resp, err := c.Post(url, "text/plain", strings.NewReader("v"))
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	fs := newFencedServer(t, &fence.Memory{})
	for _, tok := range []int64{3, 3, 9} {
		resp, body, err := post(t, fs.URL, "orders", tok)
		if err != nil || resp.StatusCode != 200 || body != "written" {
			t.Fatalf("token %d: %v %v %q", tok, err, resp, body)
		}
	}
	resp, body, err := post(t, fs.URL, "orders", 4)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusConflict || resp.Header.Get(fence.HighestHeader) != "9" ||
		!strings.Contains(body, `resource "orders": token 4 is older than 9`) {
		t.Fatalf("stale token: %d %q %q", resp.StatusCode, resp.Header.Get(fence.HighestHeader), body)
	}
	// Another resource is fenced on its own.
	if resp, _, err := post(t, fs.URL, "invoices", 1); err != nil || resp.StatusCode != 200 {
		t.Fatalf("another resource: %v %v", resp, err)
	}
	if got := fs.written(); !slices.Equal(got, []int64{3, 3, 9, 1}) {
		t.Fatalf("handler ran with %v", got)
	}
}

// Bad requests are refused before the store or the handler, each with
// its own status and a body that says why; a client with nothing to send
// sends nothing.
func TestMiddlewareBadInput(t *testing.T) {
	t.Parallel()
	fs := newFencedServer(t, &fence.Memory{})
	send := func(hdr map[string]string) (int, string) {
		req, _ := http.NewRequest("POST", fs.URL, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		hdr  map[string]string
		code int
		says string
	}{
		{map[string]string{fence.ResourceHeader: "r"}, http.StatusPreconditionRequired, "no Coord-Fence-Token header"},
		{map[string]string{fence.ResourceHeader: "r", fence.TokenHeader: "x1"}, http.StatusBadRequest, "not a number"},
		{map[string]string{fence.ResourceHeader: "r", fence.TokenHeader: "0"}, http.StatusBadRequest, "token 0"},
		{map[string]string{fence.ResourceHeader: "r", fence.TokenHeader: "-2"}, http.StatusBadRequest, "token -2"},
		{map[string]string{fence.TokenHeader: "2"}, http.StatusBadRequest, "empty resource"},
	}
	for _, c := range cases {
		if code, body := send(c.hdr); code != c.code || !strings.Contains(body, c.says) {
			t.Errorf("%v: %d %q, want %d saying %q", c.hdr, code, body, c.code, c.says)
		}
	}
	if _, _, err := post(t, fs.URL, "r", 0); !errors.Is(err, fence.ErrInvalid) {
		t.Errorf("a Transport with token 0: %v, want ErrInvalid and nothing sent", err)
	}
	if _, _, err := post(t, fs.URL, "", 1); !errors.Is(err, fence.ErrInvalid) {
		t.Errorf("a Transport with no resource: %v, want ErrInvalid", err)
	}
	if got := fs.written(); len(got) != 0 {
		t.Fatalf("the handler ran for bad requests: %v", got)
	}
	// A pair in the request's context wins over the Transport's own.
	c := &http.Client{Transport: &fence.Transport{Resource: "r", Token: func() int64 { return 0 }}}
	req, _ := http.NewRequestWithContext(fence.NewContext(context.Background(), "ctx-resource", 8), "POST", fs.URL, nil)
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a pair from the context: %v %v", resp, err)
	}
	resp.Body.Close()
}

// The server can name the resource itself (from the path), so a client
// cannot dodge a fence by naming another.
func TestMiddlewareResourceFromRequest(t *testing.T) {
	t.Parallel()
	fs := newFencedServer(t, &fence.Memory{}, fence.WithRequestResource(func(r *http.Request) string { return r.URL.Path }))
	if resp, _, _ := post(t, fs.URL+"/a", "ignored", 5); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if resp, _, _ := post(t, fs.URL+"/a", "something-else", 4); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a stale token naming another resource in its header: %s", resp.Status)
	}
}

// A store that fails refuses every write with 503: a fence fails closed.
func TestMiddlewareFailsClosed(t *testing.T) {
	t.Parallel()
	db := sqliteDB(t)
	db.Close()
	cli, err := etcdtest.NewClient(srv.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	cli.Close()
	es, err := fence.NewEtcdStore(cli)
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]fence.Store{"closed database": fence.SQLStore{DB: db}, "closed etcd client": es, "nil store": nil} {
		fs := newFencedServer(t, st)
		resp, body, err := post(t, fs.URL, "r", 7)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "write refused") {
			t.Errorf("%s: %v %v %q, want 503", name, resp, err, body)
		}
		if got := fs.written(); len(got) != 0 {
			t.Errorf("%s: the handler ran: %v", name, got)
		}
	}
}

// Concurrent writers with shuffled tokens: the handler runs with tokens
// in non-decreasing order, so no older write can land after a newer one,
// and the newest is always accepted.
func TestMiddlewareOrdersConcurrentWrites(t *testing.T) {
	t.Parallel()
	fs := newFencedServer(t, &fence.Memory{})
	var wg sync.WaitGroup
	var accepted, refused atomic.Int64
	for _, p := range rand.Perm(64) {
		wg.Go(func() {
			resp, _, err := post(t, fs.URL, "hot", int64(p+1))
			switch {
			case err != nil:
				t.Error(err)
			case resp.StatusCode == 200:
				accepted.Add(1)
			case resp.StatusCode == http.StatusConflict:
				refused.Add(1)
			default:
				t.Errorf("status %s", resp.Status)
			}
		})
	}
	wg.Wait()
	got := fs.written()
	if !slices.IsSorted(got) || len(got) == 0 || got[len(got)-1] != 64 {
		t.Fatalf("handler ran with tokens %v", got)
	}
	t.Logf("%d accepted, %d refused", accepted.Load(), refused.Load())
}

// The etcd store: the highest token per resource in one key, shared by
// every server on the cluster, refused when older, under the root.
func TestEtcdStore(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 30*time.Second)
	root := "fence-" + strconv.FormatInt(seq.Add(1), 10) + "/"
	a, err := fence.NewEtcdStore(srv.Client(), fence.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := fence.NewEtcdStore(srv.Client(), fence.WithPrefix(root))
	if err := a.Advance(ctx, "r/1", 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Advance(ctx, "r/1", 10); err != nil {
		t.Fatalf("an equal token on another server: %v", err)
	}
	var stale *fence.StaleError
	if err := b.Advance(ctx, "r/1", 9); !errors.As(err, &stale) || stale.Highest != 10 {
		t.Fatalf("Advance(9) after 10 on another server: %v", err)
	}
	if err := b.Advance(ctx, "r/1", 1_000_000_000_000); err != nil {
		t.Fatal(err)
	}
	if err := a.Advance(ctx, "r/1", 999_999_999_999); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("a token with fewer digits after a longer one: %v", err)
	}
	if h, err := a.Highest(ctx, "r/1"); err != nil || h != 1_000_000_000_000 {
		t.Fatalf("Highest = %d, %v", h, err)
	}
	if k, _ := a.Key("r/1"); k != root+"fence/r%2F1/token" {
		t.Fatalf("key %q", k)
	}
	// Racing first writes of a resource: the highest wins.
	var wg sync.WaitGroup
	for _, p := range rand.Perm(20) {
		wg.Go(func() { a.Advance(ctx, "race", int64(p+1)) })
	}
	wg.Wait()
	if h, _ := a.Highest(ctx, "race"); h != 20 {
		t.Fatalf("after racing Advances the highest is %d, want 20", h)
	}
	for _, c := range []struct {
		r   string
		tok int64
	}{{"", 1}, {"r", 0}, {strings.Repeat("x", 513), 1}} {
		if err := a.Advance(ctx, c.r, c.tok); !errors.Is(err, fence.ErrInvalid) {
			t.Errorf("Advance(%.10q, %d) = %v, want ErrInvalid", c.r, c.tok, err)
		}
	}
	if _, err := fence.NewEtcdStore(nil); !errors.Is(err, fence.ErrInvalid) {
		t.Errorf("nil client: %v", err)
	}
	if _, err := fence.NewEtcdStore(srv.Client(), fence.WithPrefix("a/lock/b")); !errors.Is(err, fence.ErrInvalid) {
		t.Errorf("a root inside another's keyspace: %v", err)
	}
}

// A newer token does not wait behind an old holder's handler that never
// ends (a long poll, a stream): it cancels it, with a stale cause, and
// runs once it returned; an older token meanwhile is refused at once.
func TestMiddlewareNewerTokenCancelsOlderHandler(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	causes := make(chan error, 1)
	h := fence.Middleware(&fence.Memory{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, tok, _ := fence.FromContext(r.Context()); tok == 5 {
			started <- struct{}{}
			<-r.Context().Done()
			causes <- context.Cause(r.Context())
			return
		}
		io.WriteString(w, "written")
	}))
	ts := httptest.NewServer(h)
	defer ts.Close()
	old := make(chan error, 1)
	go func() { _, _, err := post(t, ts.URL, "r", 5); old <- err }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the old holder's handler never started")
	}
	if resp, _, err := post(t, ts.URL, "r", 4); err != nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("an older token while 5 runs: %v %v, want 409 at once", resp, err)
	}
	resp, body, err := post(t, ts.URL, "r", 6)
	if err != nil || resp.StatusCode != 200 || body != "written" {
		t.Fatalf("the newer token: %v %v %q", resp, err, body)
	}
	if cause := <-causes; !errors.Is(cause, fence.ErrStale) {
		t.Fatalf("the old handler's context ended with %v, want ErrStale", cause)
	}
	<-old
}
