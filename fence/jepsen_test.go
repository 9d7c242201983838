package fence_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/fence"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
)

// writer is one place the holders write to: it reports whether a write
// was accepted, and fails the test on anything but an acceptance or a
// stale refusal.
type writer struct {
	name  string
	write func(ctx context.Context, token int64, value string) (bool, error)
	last  func() string // the value the resource holds now

	mu                    sync.Mutex
	staleTried, staleKept int
	freshTried, freshKept int
}

func (w *writer) do(t *testing.T, ctx context.Context, token int64, value string, stale bool) {
	ok, err := w.write(ctx, token, value)
	if err != nil {
		t.Errorf("%s: write of %q with token %d: %v", w.name, value, token, err)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if stale {
		w.staleTried++
		if ok {
			w.staleKept++
		}
	} else {
		w.freshTried++
		if ok {
			w.freshKept++
		}
	}
}

// sqlWriter writes a register row, fenced by Check or not at all.
func sqlWriter(t *testing.T, name string, db *sql.DB, fenced bool) *writer {
	register(t, db)
	return &writer{
		name: name,
		write: func(ctx context.Context, token int64, value string) (bool, error) {
			if !fenced {
				_, err := db.ExecContext(ctx, "UPDATE register SET token = $1, value = $2 WHERE id = 1", token, value)
				return err == nil, err
			}
			err := fencedWrite(ctx, db, sql.LevelDefault, "register", token, value)
			if errors.Is(err, fence.ErrStale) {
				return false, nil
			}
			return err == nil, err
		},
		last: func() string { _, v := readRegister(t, db); return v },
	}
}

// httpWriter writes to a register served behind Middleware.
func httpWriter(t *testing.T) *writer {
	var mu sync.Mutex
	var value string
	ts := httptest.NewServer(fence.Middleware(&fence.Memory{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		value = string(b)
		mu.Unlock()
	})))
	t.Cleanup(ts.Close)
	return &writer{
		name: "http",
		write: func(ctx context.Context, token int64, v string) (bool, error) {
			c := &http.Client{Transport: &fence.Transport{Resource: "register", Token: func() int64 { return token }}}
			req, _ := http.NewRequestWithContext(ctx, "PUT", ts.URL, strings.NewReader(v))
			resp, err := c.Do(req)
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				return true, nil
			case http.StatusConflict:
				return false, nil
			}
			return false, fmt.Errorf("status %s", resp.Status)
		},
		last: func() string { mu.Lock(); defer mu.Unlock(); return value },
	}
}

// The Jepsen demonstration (etcd 3.4.3: locks are unsafe without a
// check at the resource), on a real etcd: holder A takes the lock and
// writes, then pauses — its goroutine stops and its traffic to etcd is
// blackholed, so its lease expires — while B takes the lock (granted
// only once A's lease is gone) and writes; then A resumes, still
// believing it holds, and writes with its old token. Unfenced, A's stale
// writes land over B's; fenced by a SQL Check (SQLite and PostgreSQL)
// or HTTP Middleware, every stale write is refused and every fresh one
// accepted.
func TestJepsenPausedHolder(t *testing.T) {
	t.Parallel()
	const rounds, writes = 4, 5
	ctx := ctxT(t, 120*time.Second)
	ws := []*writer{
		sqlWriter(t, "unfenced (sqlite)", sqliteDB(t), false),
		sqlWriter(t, "sqlite", sqliteDB(t), true),
		httpWriter(t),
	}
	if db := postgresIfAny(t); db != nil {
		ws = append(ws, sqlWriter(t, "postgres", db, true))
	}
	name := etcdtest.Name(t)
	for r := range rounds {
		// A, on a client behind a proxy, so that its pause can cut it off.
		p := etcdtest.NewProxy(t, srv.Endpoints()[0])
		cliA := etcdtest.NewTestClient(t, p.Endpoints())
		sa, err := session.New(ctx, cliA, session.WithTTL(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		ma := lock.NewMutex(sa, name)
		if err := ma.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		locked, resume, resumed := make(chan int64), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(resumed)
			token := ma.Token() // what a process keeps (as COORD_TOKEN): it cannot ask a lock it does not know it lost
			for i := range writes {
				for _, w := range ws {
					w.do(t, ctx, token, fmt.Sprintf("A%d-%d", r, i), false)
				}
			}
			locked <- token
			<-resume // paused: a GC pause, SIGSTOP, a VM migration
			for i := range writes {
				for _, w := range ws {
					w.do(t, ctx, token, fmt.Sprintf("A%d-stale-%d", r, i), true)
				}
			}
		}()
		tokA := <-locked
		p.Blackhole()
		// B: granted once etcd expired A's lease.
		sb, err := session.New(ctx, srv.Client(), session.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		mb := lock.NewMutex(sb, name)
		if err := mb.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		tokB := mb.Token()
		if tokB <= tokA {
			t.Fatalf("round %d: B's token %d is not above A's %d", r, tokB, tokA)
		}
		var lastB string
		for i := range writes {
			lastB = fmt.Sprintf("B%d-%d", r, i)
			for _, w := range ws {
				w.do(t, ctx, tokB, lastB, false)
			}
		}
		close(resume)
		<-resumed
		for _, w := range ws {
			got, unfenced := w.last(), strings.HasPrefix(w.name, "unfenced")
			if !unfenced && got != lastB {
				t.Errorf("round %d, %s: the resource holds %q after A's stale writes, want B's %q", r, w.name, got, lastB)
			}
			if unfenced && got != fmt.Sprintf("A%d-stale-%d", r, writes-1) {
				t.Errorf("round %d, %s: holds %q; the demonstration expects A's stale write to have landed", r, w.name, got)
			}
		}
		if err := mb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		sb.Close()
		p.Restore()
		sa.Close()
	}
	t.Logf("%d rounds, %d writes per holder per round: A paused past its 1s TTL behind a blackholed proxy", rounds, writes)
	t.Logf("| backend | writes | stale attempts | stale accepted | fresh attempts | fresh accepted |")
	for _, w := range ws {
		t.Logf("| %s | %d | %d | %d | %d | %d |", w.name, w.staleTried+w.freshTried, w.staleTried, w.staleKept, w.freshTried, w.freshKept)
		if w.staleTried != rounds*writes || w.freshTried != 2*rounds*writes || w.freshKept != w.freshTried {
			t.Errorf("%s: %d stale and %d fresh attempts, %d fresh accepted", w.name, w.staleTried, w.freshTried, w.freshKept)
		}
		switch strings.HasPrefix(w.name, "unfenced") {
		case true:
			if w.staleKept != w.staleTried {
				t.Errorf("%s: only %d of %d stale writes landed: the demonstration needs them to", w.name, w.staleKept, w.staleTried)
			}
		default:
			if w.staleKept != 0 {
				t.Errorf("%s: %d stale writes accepted", w.name, w.staleKept)
			}
		}
	}
}
