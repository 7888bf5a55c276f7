package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/tacerr"
)

// Translate is tacline's one database-error translator: every package that
// runs SQL in the ledger (store itself, audit, register) turns a driver
// error into a tacline error with it, so the same driver error gets the
// same code everywhere. Domain errors (already *tacerr.Error) pass
// unchanged; what says what was being done. The codes:
//
//   - a serialization failure or deadlock (PostgreSQL), a busy or locked
//     database (SQLite): unavailable, retryable (InTx reruns the
//     transaction itself first);
//   - a lost or refused connection, a server shutting down or not accepting
//     connections, a read-only database or file (a standby, a file that
//     cannot be written), an I/O error, a full disk, a timeout:
//     unavailable, retryable;
//   - a unique violation: conflict;
//   - anything else: internal.
func Translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := tacerr.As(err); ok {
		return err
	}
	switch {
	case isRetryableDBError(err):
		return tacerr.Wrap(tacerr.Unavailable, err, "%s: transient database conflict; retry", what)
	case isUnavailable(err):
		return tacerr.Wrap(tacerr.Unavailable, err, "%s: the ledger database is unavailable; retry later", what)
	case isDuplicate(err):
		return tacerr.Wrap(tacerr.Conflict, err, "%s: already exists", what)
	}
	return tacerr.Wrap(tacerr.Internal, err, "%s", what)
}

// translate is Translate inside the package.
func translate(err error, what string) error { return Translate(err, what) }

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
// rerun at once: serialization failures and deadlocks (PostgreSQL),
// busy/locked (SQLite).
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

// isUnavailable reports errors that say the database cannot be reached or
// cannot write now, as opposed to a fault of the statement: the same
// request may succeed once the database is back.
func isUnavailable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case strings.HasPrefix(pg.Code, "08"): // connection exception
			return true
		case strings.HasPrefix(pg.Code, "57P"): // admin/crash shutdown, cannot connect now
			return true
		case strings.HasPrefix(pg.Code, "53"): // insufficient resources: disk full, out of memory, too many connections
			return true
		case pg.Code == "25006": // read-only SQL transaction: a standby after a failover
			return true
		case pg.Code == "55000" && strings.Contains(pg.Message, "not currently accepting connections"):
			return true
		}
	}
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrReadonly, sqlite3.ErrIoErr, sqlite3.ErrCantOpen, sqlite3.ErrFull, sqlite3.ErrProtocol:
			return true
		}
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true // the server refused or dropped the connection attempt
	}
	if pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	// pgx reports a connection it closed after a fatal error by its text
	// only.
	msg := err.Error()
	return strings.Contains(msg, "conn closed")
}
