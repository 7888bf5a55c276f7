package storetest

import (
	"database/sql"

	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/internal/rawsql"
)

// Reader returns the ledger's read pool, for tests that assert on rows the
// store's methods do not show (and for nothing else: production code reads
// the ledger through store's typed methods).
func Reader(db *store.DB) *sqlx.DB { return rawsql.Reader(db) }

// Exec runs a raw statement inside a ledger transaction, for tests that
// inject a fault (a trigger that makes a later write fail) or corrupt a row
// on purpose.
func Exec(tx *store.Tx, query string, args ...any) (sql.Result, error) {
	t := rawsql.Tx(tx)
	return t.Exec(t.Rebind(query), args...)
}

// Get runs a raw one-row query inside a ledger transaction (see Exec).
func Get(tx *store.Tx, dest any, query string, args ...any) error {
	t := rawsql.Tx(tx)
	return t.Get(dest, t.Rebind(query), args...)
}
