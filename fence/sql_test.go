package fence_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/fence"
)

// register is the resource the tests fence: one row, the last writer's
// token and value.
func register(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	if err := fence.DefaultTable.Create(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE register (id INTEGER PRIMARY KEY, token BIGINT NOT NULL, value TEXT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO register (id, token, value) VALUES (1, 0, '')"); err != nil {
		t.Fatal(err)
	}
}

// fencedWrite writes value with token in one transaction fenced by Check.
func fencedWrite(ctx context.Context, db *sql.DB, iso sql.IsolationLevel, resource string, token int64, value string) error {
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fence.Check(ctx, tx, resource, token); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE register SET token = $1, value = $2 WHERE id = 1", token, value); err != nil {
		return err
	}
	return tx.Commit()
}

func readRegister(t *testing.T, db *sql.DB) (int64, string) {
	t.Helper()
	var tok int64
	var v string
	if err := db.QueryRowContext(ctxT(t, 10*time.Second), "SELECT token, value FROM register WHERE id = 1").Scan(&tok, &v); err != nil {
		t.Fatal(err)
	}
	return tok, v
}

// A newer or equal token is recorded and its writes land; an older one is
// refused with a StaleError, its transaction rolled back so that nothing
// it wrote (or would write) commits.
func TestCheckRefusesOlderTokens(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sql.DB) {
		register(t, db)
		ctx := ctxT(t, 30*time.Second)
		for _, tok := range []int64{5, 5, 7} {
			if err := fencedWrite(ctx, db, 0, "r", tok, "v"); err != nil {
				t.Fatalf("token %d: %v", tok, err)
			}
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE register SET value = 'written before the check' WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		err = fence.Check(ctx, tx, "r", 6)
		var stale *fence.StaleError
		if !errors.Is(err, fence.ErrStale) || !errors.As(err, &stale) || stale.Highest != 7 || stale.Token != 6 || stale.Resource != "r" {
			t.Fatalf("Check(6) after 7: %v (%+v), want a StaleError with Highest 7", err, stale)
		}
		if !strings.Contains(err.Error(), "older than 7") {
			t.Errorf("the error does not say why: %v", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE register SET value = 'stale' WHERE id = 1"); !errors.Is(err, sql.ErrTxDone) {
			t.Fatalf("a write after a refused Check: %v, want sql.ErrTxDone", err)
		}
		if err := tx.Commit(); !errors.Is(err, sql.ErrTxDone) {
			t.Fatalf("Commit after a refused Check: %v, want sql.ErrTxDone", err)
		}
		if tok, v := readRegister(t, db); tok != 7 || v != "v" {
			t.Fatalf("register = %d %q after a refused write, want 7 \"v\"", tok, v)
		}
		if h, err := fence.DefaultTable.Highest(ctx, db, "r"); err != nil || h != 7 {
			t.Fatalf("Highest = %d, %v", h, err)
		}
		if h, err := fence.DefaultTable.Highest(ctx, db, "other"); err != nil || h != 0 {
			t.Fatalf("Highest of an unseen resource = %d, %v", h, err)
		}
		// Resources are independent.
		if err := fencedWrite(ctx, db, 0, "other", 1, "v"); err != nil {
			t.Fatal(err)
		}
	})
}

// Bad input is a documented sentinel, and the transaction is refused.
func TestCheckBadInput(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sql.DB) {
		register(t, db)
		ctx := ctxT(t, 30*time.Second)
		cases := []struct {
			table    fence.Table
			resource string
			token    int64
			want     error
		}{
			{fence.DefaultTable, "r", 0, fence.ErrInvalid},
			{fence.DefaultTable, "r", -3, fence.ErrInvalid},
			{fence.DefaultTable, "", 1, fence.ErrInvalid},
			{fence.DefaultTable, strings.Repeat("x", fence.MaxResource+1), 1, fence.ErrInvalid},
			{fence.DefaultTable, "bad\xff", 1, fence.ErrInvalid},
			{"coord_fence; DROP TABLE register", "r", 1, fence.ErrInvalid},
			{"a.b.c", "r", 1, fence.ErrInvalid},
			{"1table", "r", 1, fence.ErrInvalid},
			{"no_such_table", "r", 1, fence.ErrNoTable},
		}
		for _, c := range cases {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.table.Check(ctx, tx, c.resource, c.token); !errors.Is(err, c.want) {
				t.Errorf("Check(%q, %.20q, %d) = %v, want %v", c.table, c.resource, c.token, err, c.want)
			}
			if err := tx.Commit(); !errors.Is(err, sql.ErrTxDone) {
				t.Errorf("Check(%q, %.20q, %d) left the transaction open", c.table, c.resource, c.token)
			}
		}
		if err := fence.Check(ctx, nil, "r", 1); !errors.Is(err, fence.ErrInvalid) {
			t.Errorf("Check(nil tx) = %v", err)
		}
		if _, err := fence.Table("no_such_table").Highest(ctx, db, "r"); !errors.Is(err, fence.ErrNoTable) {
			t.Errorf("Highest on a missing table = %v, want ErrNoTable", err)
		}
	})
}

// Transactions racing with shuffled tokens on one resource: whatever the
// interleaving, no transaction commits a write over a newer token's, and
// the newest token's write is the one left. Each fenced transaction reads
// the register after its Check: it must never see a newer token there.
func TestCheckRacingTransactions(t *testing.T) {
	t.Parallel()
	isos := map[string][]sql.IsolationLevel{
		"sqlite":   {sql.LevelDefault},
		"postgres": {sql.LevelReadCommitted, sql.LevelSerializable},
	}
	eachDB(t, func(t *testing.T, db *sql.DB) {
		register(t, db)
		db.SetMaxOpenConns(16)
		for _, iso := range isos[strings.SplitN(t.Name(), "/", 2)[1]] {
			const n = 48
			base := int64(1000 * (int(iso) + 1))
			tokens := rand.Perm(n)
			var (
				wg                 sync.WaitGroup
				mu                 sync.Mutex
				accepted, refused  int
				violations, others []string
				maxAccepted        int64
			)
			ctx := ctxT(t, 60*time.Second)
			for _, p := range tokens {
				tok := base + int64(p) + 1
				wg.Go(func() {
					err := func() error {
						tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
						if err != nil {
							return err
						}
						defer tx.Rollback()
						if err := fence.Check(ctx, tx, "race", tok); err != nil {
							return err
						}
						var last int64
						if err := tx.QueryRowContext(ctx, "SELECT token FROM register WHERE id = 1").Scan(&last); err != nil {
							return err
						}
						if last > tok {
							mu.Lock()
							violations = append(violations, "")
							mu.Unlock()
						}
						if _, err := tx.ExecContext(ctx, "UPDATE register SET token = $1 WHERE id = 1", tok); err != nil {
							return err
						}
						return tx.Commit()
					}()
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						accepted++
						maxAccepted = max(maxAccepted, tok)
					case errors.Is(err, fence.ErrStale):
						refused++
					default:
						// A serialization failure or a busy database:
						// refused too (fail closed), counted apart.
						others = append(others, err.Error())
					}
				})
			}
			wg.Wait()
			last, _ := readRegister(t, db)
			t.Logf("isolation %v: %d accepted, %d stale refused, %d failed otherwise", iso, accepted, refused, len(others))
			if len(violations) > 0 {
				t.Fatalf("isolation %v: %d fenced transactions saw a newer token's write", iso, len(violations))
			}
			if last != maxAccepted {
				t.Fatalf("isolation %v: register holds token %d, but %d was the newest accepted", iso, last, maxAccepted)
			}
			if iso != sql.LevelSerializable && (maxAccepted != base+n || len(others) > 0) {
				t.Fatalf("isolation %v: newest accepted %d, want %d; other failures: %v", iso, maxAccepted, base+n, others)
			}
		}
	})
}

// A store that fails never lets a write through.
func TestSQLStoreFailsClosed(t *testing.T) {
	t.Parallel()
	eachDB(t, func(t *testing.T, db *sql.DB) {
		register(t, db)
		ctx := ctxT(t, 30*time.Second)
		st := fence.SQLStore{DB: db}
		if err := st.Advance(ctx, "r", 3); err != nil {
			t.Fatal(err)
		}
		if err := st.Advance(ctx, "r", 2); !errors.Is(err, fence.ErrStale) {
			t.Fatalf("Advance(2) after 3 = %v, want ErrStale", err)
		}
		if err := (fence.SQLStore{DB: db, Table: "missing"}).Advance(ctx, "r", 4); !errors.Is(err, fence.ErrNoTable) {
			t.Fatalf("Advance on a missing table = %v, want ErrNoTable", err)
		}
		if err := (fence.SQLStore{}).Advance(ctx, "r", 4); !errors.Is(err, fence.ErrInvalid) {
			t.Fatalf("Advance with no database = %v, want ErrInvalid", err)
		}
		db.Close()
		if err := st.Advance(ctx, "r", 5); !errors.Is(err, fence.ErrUnavailable) {
			t.Fatalf("Advance on a closed database = %v, want ErrUnavailable", err)
		}
	})
}
