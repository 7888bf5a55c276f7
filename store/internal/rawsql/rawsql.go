// Package rawsql hands the store's own helpers (store/storetest) the
// database handles behind a store.DB and a store.Tx, which the store's
// public surface never shows. Being internal to store, it cannot be
// imported from outside store's tree; the handles serve tests' assertions
// and fault injection (a trigger that makes a write fail), never production
// code.
package rawsql

import (
	"database/sql"

	"github.com/jmoiron/sqlx"
)

// Runner runs raw statements inside a ledger transaction.
type Runner interface {
	Rebind(query string) string
	Exec(query string, args ...any) (sql.Result, error)
	Get(dest any, query string, args ...any) error
}

// Set by package store when it is initialised.
var (
	// Reader returns the read pool of a *store.DB.
	Reader func(db any) *sqlx.DB
	// Tx returns the database transaction of a *store.Tx.
	Tx func(tx any) Runner
)
