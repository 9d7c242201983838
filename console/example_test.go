package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"

	"github.com/coord-go/coord/console"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
)

// Mount the console in a service under /debug/coord/, as net/http/pprof
// is mounted, and look at a held lock on it.
func Example() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	ctx := context.Background()
	s, _ := session.New(ctx, srv.Client())
	defer s.Close()
	m := lock.NewMutex(s, "backup")
	m.Lock(ctx)

	c, err := console.New(srv.Client()) // the root "coord/", read-only
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/coord/", http.StripPrefix("/debug/coord", c))
	hs := httptest.NewServer(mux)
	defer hs.Close()

	resp, err := http.Get(hs.URL + "/debug/coord/")
	if err != nil {
		fmt.Println(err)
		return
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println("status:", resp.StatusCode)
	fmt.Println("shows the lock:", strings.Contains(string(page), `data-name="backup"`))
	fmt.Println("with its token:", strings.Contains(string(page), `data-token="`+strconv.FormatInt(m.Token(), 10)+`"`))
	// Output:
	// status: 200
	// shows the lock: true
	// with its token: true
}

// A console is read-only unless WithActions(true): no buttons, and every
// POST is refused.
func ExampleWithActions() {
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	c, _ := console.New(srv.Client())
	defer c.Close()
	hs := httptest.NewServer(c)
	defer hs.Close()

	resp, err := http.PostForm(hs.URL+"/action", url.Values{"op": {"redrive"}, "kind": {"queue"}, "name": {"emails"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.StatusCode, http.StatusText(resp.StatusCode))
	// Output:
	// 403 Forbidden
}
