package store

import (
	"context"
	"database/sql"

	"github.com/tacline/tacline/internal/sqlitefile"
	"github.com/tacline/tacline/tacerr"
)

// SQL of the size probe.
const (
	qSQLitePageCount = `PRAGMA page_count`
	qSQLitePageSize  = `PRAGMA page_size`
	qPostgresDBSize  = `SELECT pg_database_size(current_database())`
)

// Size returns the size in bytes of the ledger database that cfg names,
// as the database sees it (SQLite: pages × page size, counting pages still
// only in the write-ahead log; PostgreSQL: pg_database_size). It opens its
// own read-only connection and runs no migration, so it may watch a ledger
// that a server in another process is writing (`tacline bench soak`).
func Size(ctx context.Context, cfg Config) (int64, error) {
	if err := cfg.Validate(); err != nil {
		return 0, err
	}
	var (
		db  *sql.DB
		err error
	)
	switch cfg.Driver {
	case SQLite:
		path := sqlitePath(cfg.DSN)
		db, err = sql.Open("sqlite3", sqlitefile.URI(path, "mode=ro&_busy_timeout=10000"))
	default:
		db, err = sql.Open("pgx", cfg.DSN)
	}
	if err != nil {
		return 0, tacerr.Wrap(tacerr.Unavailable, err, "open the ledger to measure its size")
	}
	defer db.Close()
	if cfg.Driver == Postgres {
		var n int64
		if err := db.QueryRowContext(ctx, qPostgresDBSize).Scan(&n); err != nil {
			return 0, translate(err, "measure the ledger's size")
		}
		return n, nil
	}
	var pages, size int64
	if err := db.QueryRowContext(ctx, qSQLitePageCount).Scan(&pages); err != nil {
		return 0, translate(err, "measure the ledger's size")
	}
	if err := db.QueryRowContext(ctx, qSQLitePageSize).Scan(&size); err != nil {
		return 0, translate(err, "measure the ledger's size")
	}
	return pages * size, nil
}
