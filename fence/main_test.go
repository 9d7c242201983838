package fence_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/pgtest"
	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL, as database/sql driver "pgx"
	_ "modernc.org/sqlite"             // SQLite in pure Go (no cgo), as driver "sqlite"
)

var (
	srv *etcdtest.Server
	pg  pgtest.Shared
	seq atomic.Int64
)

// TestMain shares one etcd server (with a short election timeout, so
// that leases of 1 s are allowed and a paused holder's lease expires
// quickly) and, once a test asks for it, one PostgreSQL server.
func TestMain(m *testing.M) {
	s, err := etcdtest.Start(etcdtest.WithoutFsync(), etcdtest.WithElectionTimeout(50*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdtest:", err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	pg.Close()
	s.Close()
	os.Exit(etcdtest.CheckLeaks(code))
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	return etcdtest.Context(t, d)
}

// sqliteDB opens a fresh SQLite database file, with immediate
// transactions and a busy timeout so that writers queue.
func sqliteDB(t testing.TB) *sql.DB {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "fence.db") + "?_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(wal)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// postgresDB opens a schema of its own on the shared PostgreSQL server
// (skipping the test when there is none, unless CI requires it).
func postgresDB(t testing.TB) *sql.DB {
	t.Helper()
	s := pg.Get(t)
	admin, err := sql.Open("pgx", s.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	schema := fmt.Sprintf("t%d", seq.Add(1))
	if _, err := admin.ExecContext(ctxT(t, 30*time.Second), "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", s.DSN("postgres")+" search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// eachDB runs f on a fresh SQLite database and a fresh PostgreSQL
// schema, as subtests (the PostgreSQL one skips alone when there is no
// PostgreSQL, unless CI requires it).
func eachDB(t *testing.T, f func(t *testing.T, db *sql.DB)) {
	t.Run("sqlite", func(t *testing.T) { f(t, sqliteDB(t)) })
	t.Run("postgres", func(t *testing.T) { f(t, postgresDB(t)) })
}

// postgresIfAny is postgresDB for a test that runs without PostgreSQL
// too: nil (and a log line) when there is none and CI does not require it.
func postgresIfAny(t *testing.T) *sql.DB {
	if pgtest.Binaries() == "" && os.Getenv(pgtest.RequireEnv) == "" {
		t.Logf("PostgreSQL server binaries not found: its part is skipped (set %s=1 to make this a failure)", pgtest.RequireEnv)
		return nil
	}
	return postgresDB(t)
}
