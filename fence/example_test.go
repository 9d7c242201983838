package fence_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/fence"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
)

// A lock's token fences the SQL writes it guards: a holder that comes
// back with the token of a lock it lost (here, simply an old one) is
// refused, and its transaction with it.
func Example() {
	srv, err := etcdtest.Start()
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "fence-example-")
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_txlock=immediate&_pragma=busy_timeout(5000)")
	if err != nil {
		panic(err)
	}
	defer db.Close()
	if err := fence.DefaultTable.Create(ctx, db); err != nil {
		panic(err)
	}
	db.ExecContext(ctx, "CREATE TABLE report (id INTEGER PRIMARY KEY, body TEXT)")

	// write stores the report in a transaction fenced by token.
	write := func(token int64, body string) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fence.Check(ctx, tx, "report", token); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT OR REPLACE INTO report (id, body) VALUES (1, $1)", body); err != nil {
			return err
		}
		return tx.Commit()
	}

	s, err := session.New(ctx, srv.Client())
	if err != nil {
		panic(err)
	}
	defer s.Close()
	m := lock.NewMutex(s, "report")
	m.Lock(ctx)
	old := m.Token()
	fmt.Println("first holder:", write(old, "monday"))
	m.Unlock(ctx)

	m.Lock(ctx) // the next holder
	fmt.Println("next holder:", write(m.Token(), "tuesday"))
	m.Unlock(ctx)

	err = write(old, "monday, late") // the first holder, back from a pause
	fmt.Println("late write refused:", errors.Is(err, fence.ErrStale))
	var body string
	db.QueryRowContext(ctx, "SELECT body FROM report WHERE id = 1").Scan(&body)
	fmt.Println("report:", body)
	// Output:
	// first holder: <nil>
	// next holder: <nil>
	// late write refused: true
	// report: tuesday
}

// An HTTP service behind Middleware refuses a stale token with 409 and a
// body that says why; its clients send their token with Transport, which
// sends nothing for a holder that holds nothing (token 0).
func ExampleMiddleware() {
	store := &fence.Memory{}
	api := httptest.NewServer(fence.Middleware(store)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, token, _ := fence.FromContext(r.Context())
		fmt.Fprintf(w, "written with token %d", token)
	})))
	defer api.Close()

	send := func(token int64) {
		c := &http.Client{Transport: &fence.Transport{Resource: "orders", Token: func() int64 { return token }}}
		resp, err := c.Post(api.URL, "text/plain", strings.NewReader("order"))
		if err != nil {
			fmt.Println("not sent:", errors.Is(err, fence.ErrInvalid))
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%d %s\n", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	send(7)
	send(6)
	send(0)
	// Output:
	// 200 written with token 7
	// 409 fence: resource "orders": token 6 is older than 7, already seen: stale write refused
	// not sent: true
}
