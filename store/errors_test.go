package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestTranslateRealOutage cuts a live ledger off its database (PostgreSQL:
// the database closed and its backends terminated; SQLite: the file made
// immutable) and requires every failure to be unavailable and retryable
// (before, the station lookup and the committer answered internal, which
// the API turned into 401 "not enrolled" and 500), then the same calls to
// succeed once the database is back.
func TestTranslateRealOutage(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		p := seed(t, db, 0, 999)
		if err := db.EnrollStation(ctx, store.StationRecord{ID: "S1", Factory: "F1", Line: "L1", Pools: []string{p.Name}}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "before", p.Name, 2); err != nil {
			t.Fatal(err)
		}
		restore := storetest.Outage(t, db)

		// Writes: the group committer and a plain transaction.
		_, err := reserve(db, "during", p.Name, 2)
		requireUnavailable(t, "reserve during the outage", err)
		err = db.EnrollStation(ctx, store.StationRecord{ID: "S2", Factory: "F1", Line: "L1", Pools: []string{p.Name}}, "test")
		requireUnavailable(t, "enroll during the outage", err)
		if db.Dialect() == store.Postgres {
			// SQLite's readers still answer from the read-only file.
			_, err = db.Station(ctx, "S1")
			requireUnavailable(t, "station lookup during the outage", err)
			_, err = db.Station(ctx, "nobody")
			requireUnavailable(t, "lookup of an unknown station during the outage", err)
		}

		restore()
		// The pool reconnects on its own; the first attempts after the
		// outage may still meet a dead connection, and say so retryably.
		deadline := time.Now().Add(30 * time.Second)
		for {
			_, err = reserve(db, "after", p.Name, 2)
			if err == nil {
				break
			}
			requireUnavailable(t, "reserve right after the outage", err)
			if time.Now().After(deadline) {
				t.Fatalf("reserve still failing 30s after the outage: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st, err := db.Station(ctx, "S1"); err != nil || st.ID != "S1" {
			t.Fatalf("station after the outage = %+v, %v", st, err)
		}
		if _, err := db.Station(ctx, "nobody"); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("unknown station after the outage = %v, want not_found", err)
		}
		mustCheck(t, db)
	})
}

func requireUnavailable(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want unavailable", what)
	}
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Unavailable || !e.Retryable() || e.RetryAfter() <= 0 {
		t.Fatalf("%s = %v (code %s), want unavailable, retryable, with a Retry-After", what, err, tacerr.CodeOf(err))
	}
}

// TestTranslateClassifies pins the classification of driver errors that a
// test cannot provoke on demand (a deadlock, a standby, a locked file).
func TestTranslateClassifies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want tacerr.Code
	}{
		{"pg serialization failure", &pgconn.PgError{Code: "40001"}, tacerr.Unavailable},
		{"pg deadlock", &pgconn.PgError{Code: "40P01"}, tacerr.Unavailable},
		{"pg admin shutdown", &pgconn.PgError{Code: "57P01", Severity: "FATAL", Message: "terminating connection due to administrator command"}, tacerr.Unavailable},
		{"pg cannot connect now", &pgconn.PgError{Code: "57P03"}, tacerr.Unavailable},
		{"pg connection failure", &pgconn.PgError{Code: "08006"}, tacerr.Unavailable},
		{"pg too many connections", &pgconn.PgError{Code: "53300"}, tacerr.Unavailable},
		{"pg read-only standby", &pgconn.PgError{Code: "25006"}, tacerr.Unavailable},
		{"pg database closed", &pgconn.PgError{Code: "55000", Message: `database "x" is not currently accepting connections`}, tacerr.Unavailable},
		{"pg unique violation", &pgconn.PgError{Code: "23505"}, tacerr.Conflict},
		{"pg syntax error", &pgconn.PgError{Code: "42601"}, tacerr.Internal},
		{"sqlite busy (database is locked)", sqlite3.Error{Code: sqlite3.ErrBusy}, tacerr.Unavailable},
		{"sqlite locked", sqlite3.Error{Code: sqlite3.ErrLocked}, tacerr.Unavailable},
		{"sqlite read-only file", sqlite3.Error{Code: sqlite3.ErrReadonly}, tacerr.Unavailable},
		{"sqlite I/O error", sqlite3.Error{Code: sqlite3.ErrIoErr}, tacerr.Unavailable},
		{"sqlite disk full", sqlite3.Error{Code: sqlite3.ErrFull}, tacerr.Unavailable},
		{"sqlite unique", sqlite3.Error{Code: sqlite3.ErrConstraint, ExtendedCode: sqlite3.ErrConstraintUnique}, tacerr.Conflict},
		{"sqlite check constraint", sqlite3.Error{Code: sqlite3.ErrConstraint, ExtendedCode: sqlite3.ErrConstraintCheck}, tacerr.Internal},
		{"dropped connection", errors.New("conn closed"), tacerr.Unavailable},
		{"timeout", context.DeadlineExceeded, tacerr.Unavailable},
		{"domain error passes", tacerr.New(tacerr.PoolExhausted, "none left"), tacerr.PoolExhausted},
		{"plain error", errors.New("scan: converting NULL to int64"), tacerr.Internal},
	}
	for _, tc := range tests {
		if got := tacerr.CodeOf(store.Translate(tc.err, "do it")); got != tc.want {
			t.Errorf("%s: Translate = %s, want %s", tc.name, got, tc.want)
		}
	}
}
