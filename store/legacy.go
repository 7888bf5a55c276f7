package store

import (
	"context"
	"database/sql"

	"github.com/jmoiron/sqlx"
)

// Temporary: the raw SQL surface of Tx while packages move their SQL into
// store. Deleted when the last one has moved.

func (tx *Tx) Dialect() Dialect                                 { return tx.db.dialect }
func (tx *Tx) Exec(q string, args ...any) (sql.Result, error)   { return tx.exec(q, args...) }
func (tx *Tx) Get(dest any, q string, args ...any) error        { return tx.get(dest, q, args...) }
func (tx *Tx) Select(dest any, q string, args ...any) error     { return tx.sel(dest, q, args...) }
func (tx *Tx) Queryx(q string, args ...any) (*sqlx.Rows, error) { return tx.queryx(q, args...) }
func (tx *Tx) QueryRowx(q string, args ...any) *sqlx.Row        { return tx.queryRowx(q, args...) }
func (tx *Tx) Rebind(q string) string                           { return tx.rebind(q) }
func (tx *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, q, args...)
}
func (tx *Tx) GetContext(ctx context.Context, dest any, q string, args ...any) error {
	return tx.tx.GetContext(ctx, dest, q, args...)
}
func (tx *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, q, args...)
}
func (tx *Tx) QueryRowxContext(ctx context.Context, q string, args ...any) *sqlx.Row {
	return tx.tx.QueryRowxContext(ctx, q, args...)
}
func (tx *Tx) QueryxContext(ctx context.Context, q string, args ...any) (*sqlx.Rows, error) {
	return tx.tx.QueryxContext(ctx, q, args...)
}
