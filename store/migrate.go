package store

import (
	"context"
	"database/sql"
	"embed"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	// The database drivers: "sqlite3" and "pgx".
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/tacerr"
)

// migrations holds one directory of goose migrations per dialect. Packages
// that own tables (audit, register) add their files here, numbered after the
// ledger's, so that one ordered history describes the whole schema.
//
//go:embed migrations
var migrations embed.FS

// Migrate applies pending migrations. On PostgreSQL a session advisory lock
// serialises replicas that start at the same time.
func (db *DB) Migrate(ctx context.Context) error {
	p, err := db.migrations()
	if err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "apply ledger migrations")
	}
	return nil
}

// MigrateDownTo rolls the schema back to version (the migrations after it
// are undone, newest first). It is for upgrade tests and an emergency
// rollback before starting an older tacline; the next Migrate (every start)
// applies them again.
func (db *DB) MigrateDownTo(ctx context.Context, version int64) error {
	p, err := db.migrations()
	if err != nil {
		return err
	}
	if _, err := p.DownTo(ctx, version); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "roll ledger migrations back to %d", version)
	}
	return nil
}

// migrations returns the goose provider of db's dialect.
func (db *DB) migrations() (*goose.Provider, error) {
	return migrationsOn(db.dialect, db.w.DB)
}

// migrationsOn returns the goose provider of dialect d's migrations on c.
func migrationsOn(d Dialect, c *sql.DB) (*goose.Provider, error) {
	sub, err := fs.Sub(migrations, "migrations/"+string(d))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "migrations for %s", d)
	}
	var opts []goose.ProviderOption
	dialect := goose.DialectSQLite3
	if d == Postgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "migration lock")
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, c, sub, opts...)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "prepare migrations")
	}
	return p, nil
}
