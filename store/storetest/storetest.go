// Package storetest gives tests real ledger databases: a fresh SQLite file in
// the test's temporary directory, or a fresh, randomly named PostgreSQL
// database that is dropped when the test ends.
//
// PostgreSQL is reached through the administrative DSN in
// TACLINE_TEST_PG_DSN (make test sets it, starting a throwaway cluster when
// no server answers), defaulting to the local server on 127.0.0.1:5432.
// Tests never skip for want of PostgreSQL: a missing server is a failure.
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/pgadmin"
)

// DefaultAdminDSN is used when TACLINE_TEST_PG_DSN is unset.
const DefaultAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminDSN returns the administrative PostgreSQL DSN for tests.
func AdminDSN() string {
	if v := os.Getenv("TACLINE_TEST_PG_DSN"); v != "" {
		return v
	}
	return DefaultAdminDSN
}

// PostgresDSN creates a fresh, randomly named database and returns its DSN.
// The database is dropped when t ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn, drop, err := pgadmin.CreateDatabase(context.Background(), AdminDSN())
	if err != nil {
		t.Fatalf("create PostgreSQL test database (is a server reachable at %s? make test starts one): %v", AdminDSN(), err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return dsn
}

// Config returns a ledger configuration for dialect d on a fresh database.
func Config(t testing.TB, d store.Dialect) store.Config {
	t.Helper()
	switch d {
	case store.SQLite:
		return store.Config{Driver: store.SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")}
	case store.Postgres:
		return store.Config{Driver: store.Postgres, DSN: PostgresDSN(t)}
	}
	t.Fatalf("unknown dialect %q", d)
	return store.Config{}
}

// Open opens a fresh, migrated ledger of dialect d, closed when t ends.
func Open(t testing.TB, d store.Dialect) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), Config(t, d))
	if err != nil {
		t.Fatalf("open %s ledger: %v", d, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Dialects lists the dialects every conformance test runs on.
var Dialects = []store.Dialect{store.SQLite, store.Postgres}

// ForEachDialect runs fn in a subtest per dialect (named for it): the one
// loop of every test that must hold on both databases.
func ForEachDialect(t *testing.T, fn func(t *testing.T, d store.Dialect)) {
	for _, d := range Dialects {
		t.Run(string(d), func(t *testing.T) { fn(t, d) })
	}
}

// ForEachLedger runs fn, in parallel, on a fresh ledger of each dialect
// (the store's conformance suite).
func ForEachLedger(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		t.Parallel()
		fn(t, Open(t, d))
	})
}
