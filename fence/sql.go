package fence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Table is the name of a fence table in a SQL database: one row per
// resource, holding the highest token seen for it.
//
//	CREATE TABLE coord_fence (
//	    resource VARCHAR(512) PRIMARY KEY,  -- the resource's name
//	    token    BIGINT NOT NULL            -- the highest token seen
//	);
//
// A name is an SQL identifier, optionally schema-qualified
// ("app.coord_fence"): letters, digits and underscores, not starting
// with a digit, at most 63 bytes a part. It is used unquoted.
type Table string

// DefaultTable is the table Check and SQLStore use when given none.
const DefaultTable Table = "coord_fence"

// Check fences the caller's transaction tx on resource with token, in
// DefaultTable; see Table.Check.
func Check(ctx context.Context, tx *sql.Tx, resource string, token int64) error {
	return DefaultTable.Check(ctx, tx, resource, token)
}

// Check fences the caller's transaction tx: it records token as the
// highest seen for resource and returns nil, or, when a higher token was
// seen already, refuses it with an error wrapping ErrStale (a
// *StaleError). Call it in the transaction that makes the fenced writes,
// first, then write and commit: the writes then commit only if no newer
// holder's did before, and no newer holder's can commit in between.
//
// It is one statement, an upsert whose update is conditional:
//
//	INSERT INTO t AS f (resource, token) VALUES ($1, $2)
//	ON CONFLICT (resource) DO UPDATE SET token = excluded.token
//	WHERE f.token <= excluded.token
//
// which locks the resource's row until tx ends. Two transactions racing
// with tokens 5 and 6 are therefore ordered by that lock: on PostgreSQL
// under READ COMMITTED the second waits for the first to end and then
// judges its WHERE against the row as the first committed it (so 5 after
// 6 is refused, 6 after 5 accepted); under REPEATABLE READ or
// SERIALIZABLE the second fails with a serialization error instead (fail
// closed: retry it in a new transaction). SQLite runs one writer at a
// time; open the database with immediate transactions and a busy timeout
// (modernc.org/sqlite: "?_txlock=immediate&_pragma=busy_timeout(5000)")
// so that writers queue instead of failing with SQLITE_BUSY.
//
// On any error, stale or not, Check rolls tx back, so a caller that
// ignores the error cannot commit the writes it fenced: every later use
// of tx returns sql.ErrTxDone. A token that is not positive or a bad
// resource name is ErrInvalid, a missing table ErrNoTable, any other
// failure of the database ErrUnavailable. The statement uses $1-style
// parameters and ON CONFLICT, which PostgreSQL (9.5 and later) and
// SQLite (3.24 and later) share; the package documentation says what
// MySQL needs instead.
func (t Table) Check(ctx context.Context, tx *sql.Tx, resource string, token int64) (err error) {
	if tx == nil {
		return fmt.Errorf("%w: nil transaction", ErrInvalid)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if err := t.valid(); err != nil {
		return err
	}
	if err := valid(resource, token); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, "INSERT INTO "+string(t)+" AS f (resource, token) VALUES ($1, $2) "+
		"ON CONFLICT (resource) DO UPDATE SET token = excluded.token WHERE f.token <= excluded.token", resource, token)
	if err != nil {
		return t.failed(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return t.failed(err)
	}
	if n > 0 {
		return nil
	}
	stale := &StaleError{Resource: resource, Token: token}
	// Say by how much; the refusal stands whether or not this read works.
	tx.QueryRowContext(ctx, "SELECT token FROM "+string(t)+" WHERE resource = $1", resource).Scan(&stale.Highest)
	return stale
}

// Highest returns the highest token seen for resource, or 0 when none
// was. q is a *sql.DB, *sql.Tx or *sql.Conn.
func (t Table) Highest(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}, resource string) (int64, error) {
	if err := t.valid(); err != nil {
		return 0, err
	}
	if err := valid(resource, 1); err != nil {
		return 0, err
	}
	var token int64
	err := q.QueryRowContext(ctx, "SELECT token FROM "+string(t)+" WHERE resource = $1", resource).Scan(&token)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, t.failed(err)
	}
	return token, nil
}

// Create creates the table if it does not exist. db is a *sql.DB,
// *sql.Tx or *sql.Conn.
func (t Table) Create(ctx context.Context, db interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}) error {
	if err := t.valid(); err != nil {
		return err
	}
	_, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+string(t)+
		" (resource VARCHAR(512) PRIMARY KEY, token BIGINT NOT NULL)")
	if err != nil {
		return fmt.Errorf("fence: create table %s: %w: %w", t, ErrUnavailable, err)
	}
	return nil
}

// valid reports why t cannot name a table.
func (t Table) valid() error {
	parts := strings.Split(string(t), ".")
	if len(parts) > 2 {
		return fmt.Errorf("%w: table name %q has more than a schema and a name", ErrInvalid, string(t))
	}
	for _, p := range parts {
		if !identifier(p) {
			return fmt.Errorf("%w: table name %q: want letters, digits and underscores, not starting with a digit, at most 63 bytes a part", ErrInvalid, string(t))
		}
	}
	return nil
}

func identifier(s string) bool {
	if s == "" || len(s) > 63 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// failed classifies a database error: the table missing, or anything
// else that leaves the token's staleness unknown.
func (t Table) failed(err error) error {
	if missingTable(err, string(t)) {
		return fmt.Errorf("fence: table %s: %w: %w", t, ErrNoTable, err)
	}
	return fmt.Errorf("fence: table %s: %w: %w", t, ErrUnavailable, err)
}

// missingTable recognises "no such table" from the drivers' errors
// without importing any: the SQLSTATE where the driver reports one
// (PostgreSQL's 42P01, the standard's 42S02), else the message
// (SQLite's "no such table", MySQL's "doesn't exist").
func missingTable(err error, table string) bool {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		s := st.SQLState()
		return s == "42P01" || s == "42S02"
	}
	msg := strings.ToLower(err.Error())
	name := strings.ToLower(table[strings.LastIndexByte(table, '.')+1:])
	return strings.Contains(msg, "no such table") ||
		(strings.Contains(msg, "does not exist") || strings.Contains(msg, "doesn't exist")) && strings.Contains(msg, name)
}
