// Package fence checks fencing tokens where the writes land, so that a
// holder that lost its lock, leadership or permit without knowing it (a
// process paused past its lease, a partition) cannot overwrite the work
// of the holder that came after it. Every coord holder has a token
// (Mutex.Token, Election.Token, Permit.Token; COORD_TOKEN for `coord
// lock`), strictly increasing across the successive holders of a name;
// a resource that remembers the highest token it has seen and refuses
// older ones is safe whatever the holders' clocks, pauses and networks
// do. This package is that check for the places writes usually land:
//
//   - a SQL database (database/sql, any driver): Check, in the caller's
//     own transaction, records the token or refuses the transaction;
//   - an HTTP service: Transport sends the token with a client's
//     requests, Middleware refuses stale ones with 409 Conflict;
//   - a gRPC service: client interceptors send it as metadata, server
//     interceptors refuse stale ones with codes.Aborted.
//
// The HTTP and gRPC servers keep the highest token per resource in a
// Store: Memory, SQLStore (a fence table) or EtcdStore.
//
// # The SQL table
//
// One row per resource (Table.Create creates it; the name is yours,
// DefaultTable is "coord_fence"):
//
//	CREATE TABLE coord_fence (
//	    resource VARCHAR(512) PRIMARY KEY,
//	    token    BIGINT NOT NULL
//	);
//
// Check is one statement, INSERT ... ON CONFLICT (resource) DO UPDATE ...
// WHERE token <= the new one, in the caller's transaction: it takes the
// resource's row lock, so the transactions writing a resource are ordered
// by it and a stale one is refused whatever the interleaving (Table.Check
// says how on PostgreSQL and SQLite). Call it first in the transaction,
// then write, then commit:
//
//	tx, err := db.BeginTx(ctx, nil)
//	if err != nil { ... }
//	defer tx.Rollback()
//	if err := fence.Check(ctx, tx, "orders", m.Token()); err != nil {
//	    return err // stale (errors.Is(err, fence.ErrStale)): tx is rolled back
//	}
//	// ... the writes ...
//	return tx.Commit()
//
// It runs on PostgreSQL (9.5 and later) and SQLite (3.24 and later),
// which share the statement. MySQL has neither $1 parameters nor ON
// CONFLICT ... WHERE, and its affected-row count for an unchanged row is
// 0: there, fence with
//
//	INSERT INTO coord_fence (resource, token) VALUES (?, 0) ON DUPLICATE KEY UPDATE token = token;
//	SELECT token FROM coord_fence WHERE resource = ? FOR UPDATE;
//
// in the write's transaction (the row then exists, and FOR UPDATE locks
// it under InnoDB's default REPEATABLE READ, reading the latest committed
// token), refuse the transaction when that token is higher than yours,
// and otherwise UPDATE it to yours before the writes (this package's
// tests do not run MySQL).
//
// # Safety
//
// Everything fails closed: a store or database that cannot answer
// refuses the write (ErrUnavailable; 503 over HTTP, codes.Unavailable
// over gRPC), a zero token (a holder that holds nothing), a negative one
// or a bad resource name is refused as ErrInvalid, a missing table as
// ErrNoTable, and on any refusal Check rolls the transaction back so its
// writes cannot commit. Equal tokens are accepted: one holder writes many
// times.
//
// The SQL check is atomic with the writes it guards, because it is in
// their transaction. The HTTP and gRPC checks are not in the handler's
// writes: they run each resource's requests one at a time in the server
// process (a newer token cancels an older one's handler still running),
// so one server replica never reorders them; replicas sharing a store
// still each run their own, so fence writes to a shared database with
// Check in their own transaction too. Memory forgets everything with its
// process: after a restart it accepts the first token it sees.
//
// Tokens only protect resources that check them. For those that cannot,
// coord's lock-delay (lock.WithLockDelay and its election and semaphore
// counterparts) makes the next holder wait after a holder was lost
// uncleanly. Every value in this package is safe for concurrent use.
package fence
