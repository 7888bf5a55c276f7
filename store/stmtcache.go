package store

import (
	"context"
	"database/sql"
	"sync"

	"github.com/jmoiron/sqlx"
)

// SQLite prepares a statement every time one runs, which costs about as much
// as executing the small statements of the ledger. The write pool has exactly
// one connection, so statements prepared on it once can be reused by every
// transaction (database/sql's Tx.Stmt reuses a pool statement already
// prepared on the transaction's own connection). A statement cannot be
// prepared on the pool while a transaction holds its only connection, so a
// statement seen for the first time runs unprepared and is prepared after
// the transaction ends. PostgreSQL needs none of this: pgx caches prepared
// statements per connection itself.
type stmtCache struct {
	mu      sync.Mutex
	db      *sqlx.DB
	stmts   map[string]*sqlx.Stmt
	pending map[string]bool
}

// maxCachedStmts bounds the cache (multi-row inserts vary in length).
const maxCachedStmts = 2048

func (c *stmtCache) get(query string) *sqlx.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.stmts[query]; ok {
		return s
	}
	if len(c.stmts)+len(c.pending) < maxCachedStmts {
		c.pending[query] = true
	}
	return nil
}

// prepare prepares the statements first seen in a transaction; it runs when
// no transaction holds the connection.
func (c *stmtCache) prepare() {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	queries := make([]string, 0, len(c.pending))
	for q := range c.pending {
		queries = append(queries, q)
		delete(c.pending, q)
	}
	c.mu.Unlock()
	// Preparing waits for the connection: never while holding c.mu, which
	// a running transaction needs.
	for _, q := range queries {
		s, err := c.db.Preparex(q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, dup := c.stmts[q]; dup {
			s.Close()
		} else {
			c.stmts[q] = s
		}
		c.mu.Unlock()
	}
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.stmts {
		s.Close()
	}
	c.stmts = map[string]*sqlx.Stmt{}
}

// stmt returns the cached prepared statement for query bound to tx, or nil.
func (tx *Tx) stmt(query string) *sqlx.Stmt {
	if tx.db.stmts == nil || !tx.write {
		return nil
	}
	s := tx.db.stmts.get(query)
	if s == nil {
		return nil
	}
	return tx.tx.(*sqlx.Tx).Stmtx(s) // SQLite only: its transactions are sqlx's
}

// exec runs a statement in the transaction (through the statement cache on
// SQLite), after the writes queued before it (pipeline.go).
func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	if err := tx.sync(); err != nil {
		return nil, err
	}
	if s := tx.stmt(query); s != nil {
		return s.Exec(args...)
	}
	return tx.tx.Exec(query, args...)
}

// get runs a query returning one row into dest (see exec).
func (tx *Tx) get(dest any, query string, args ...any) error {
	if err := tx.sync(); err != nil {
		return err
	}
	if s := tx.stmt(query); s != nil {
		return s.Get(dest, args...)
	}
	return tx.tx.Get(dest, query, args...)
}

// sel runs a query into a slice (see exec).
func (tx *Tx) sel(dest any, query string, args ...any) error {
	if err := tx.sync(); err != nil {
		return err
	}
	if s := tx.stmt(query); s != nil {
		return s.Select(dest, args...)
	}
	return tx.tx.Select(dest, query, args...)
}

// queryx runs a query (see exec); on a pipelined transaction with writes
// queued, in their round trip (queryAfterWrites).
func (tx *Tx) queryx(query string, args ...any) (rowsIter, error) {
	if rows, ok, err := tx.queryAfterWrites(query, args); ok {
		if err != nil {
			return nil, err
		}
		return rows, nil
	}
	if err := tx.sync(); err != nil {
		return nil, err
	}
	if s := tx.stmt(query); s != nil {
		return s.Queryx(args...)
	}
	return tx.tx.Queryx(query, args...)
}

// queryRowx runs a query returning at most one row (see queryx).
func (tx *Tx) queryRowx(query string, args ...any) interface{ Scan(...any) error } {
	if rows, ok, err := tx.queryAfterWrites(query, args); ok {
		if err != nil {
			return errRow{err}
		}
		return pipedRow{rows}
	}
	if err := tx.sync(); err != nil {
		return errRow{err}
	}
	if s := tx.stmt(query); s != nil {
		return s.QueryRowx(args...)
	}
	return tx.tx.QueryRowx(query, args...)
}

// readStmts caches statements prepared on the SQLite read pool (statements
// prepared on a database/sql pool are re-prepared lazily on each of its
// connections and then reused there). Reads never hold a pool connection
// while preparing, so no deferral is needed.
type readStmts struct {
	mu    sync.Mutex
	db    *sqlx.DB
	stmts map[string]*sqlx.Stmt
}

func (c *readStmts) get(query string) *sqlx.Stmt {
	c.mu.Lock()
	s, ok := c.stmts[query]
	full := len(c.stmts) >= maxCachedStmts // the map's size is read under the lock too
	c.mu.Unlock()
	if ok || full {
		return s
	}
	s, err := c.db.Preparex(query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.stmts[query]; ok {
		s.Close()
		return prev
	}
	c.stmts[query] = s
	return s
}

func (c *readStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.stmts {
		s.Close()
	}
	c.stmts = map[string]*sqlx.Stmt{}
}

// getR runs a one-row read on the read pool (through the cache on SQLite).
func (db *DB) getR(ctx context.Context, dest any, query string, args ...any) error {
	if db.rstmts != nil {
		if s := db.rstmts.get(query); s != nil {
			return s.GetContext(ctx, dest, args...)
		}
	}
	return db.r.GetContext(ctx, dest, query, args...)
}
