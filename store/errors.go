package store

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/tacerr"
)

// isDuplicate reports whether err is a unique or primary key violation.
func isDuplicate(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.ExtendedCode == sqlite3.ErrConstraintUnique || se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey
	}
	return false
}

// isExclusion reports whether err is an exclusion-constraint or trigger
// violation that the schema uses for overlapping pools.
func isExclusion(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23P01"
	}
	return err != nil && strings.Contains(err.Error(), "pool_overlap")
}

// isRetryableDBError reports errors after which the whole transaction may be
// rerun: serialization failures and deadlocks (PostgreSQL), busy/locked
// (SQLite).
func isRetryableDBError(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked
	}
	return false
}

// translate turns a driver error into a tacerr error with context. Domain
// errors (already *tacerr.Error) pass unchanged. Retryable database errors
// keep their cause so that InTx can recognise them.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := tacerr.As(err); ok {
		return err
	}
	if isRetryableDBError(err) {
		return &tacerr.Error{Code: tacerr.Unavailable, Message: what + ": transient database conflict", Retryable: true, Err: err}
	}
	if isDuplicate(err) {
		return tacerr.Wrap(tacerr.Conflict, err, "%s: already exists", what)
	}
	return tacerr.Wrap(tacerr.Internal, err, "%s", what)
}
