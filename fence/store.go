package fence

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// Store keeps the highest token seen per resource, for the HTTP
// middleware and the gRPC interceptors. Memory, SQLStore and EtcdStore
// are the stores this package has; any type with this method is one.
type Store interface {
	// Advance records token as the highest seen for resource and returns
	// nil, or refuses it with an error wrapping ErrStale when a higher
	// one was seen. Equal tokens are accepted (one holder writes many
	// times). Any other error means the store cannot tell, and the caller
	// refuses the write all the same.
	Advance(ctx context.Context, resource string, token int64) error
}

// Memory is a Store in this process's memory: for a server that is the
// only one writing its resources. It forgets everything when the process
// ends, so a restarted server accepts a stale token once before it has
// seen a newer one; use SQLStore or EtcdStore where that matters. The
// zero Memory is ready to use, and it is safe for concurrent use.
type Memory struct {
	mu      sync.Mutex
	highest map[string]int64
}

// Advance implements Store.
func (m *Memory) Advance(ctx context.Context, resource string, token int64) error {
	if err := valid(resource, token); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h := m.highest[resource]; token < h {
		return &StaleError{Resource: resource, Token: token, Highest: h}
	}
	if m.highest == nil {
		m.highest = map[string]int64{}
	}
	m.highest[resource] = token
	return nil
}

// Highest returns the highest token seen for resource, or 0.
func (m *Memory) Highest(resource string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.highest[resource]
}

// SQLStore is a Store in a fence table (Table.Create makes it): each
// Advance is one transaction of its own around Table.Check. When the
// fenced writes land in the same database, call Check in their own
// transaction instead, which makes the check and the writes one atomic
// step.
type SQLStore struct {
	DB    *sql.DB
	Table Table // DefaultTable when empty
}

// Advance implements Store.
func (s SQLStore) Advance(ctx context.Context, resource string, token int64) error {
	if s.DB == nil {
		return fmt.Errorf("%w: nil database", ErrInvalid)
	}
	t := s.Table
	if t == "" {
		t = DefaultTable
	}
	if err := valid(resource, token); err != nil {
		return err
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("fence: table %s: %w: %w", t, ErrUnavailable, err)
	}
	if err := t.Check(ctx, tx, resource, token); err != nil {
		return err // rolled back
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("fence: table %s: %w: %w", t, ErrUnavailable, err)
	}
	return nil
}
