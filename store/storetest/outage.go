package storetest

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver

	"github.com/tacline/tacline/store"
)

// Outage cuts a running ledger off its database, as a real fault does, and
// returns the function that ends the outage (also run when t ends):
//
//   - PostgreSQL: the database is closed to new connections (ALTER
//     DATABASE ... ALLOW_CONNECTIONS false) and its backends are terminated
//     (pg_terminate_backend), so every pooled connection is lost;
//   - SQLite: the database file and its WAL are made immutable (chattr +i),
//     which refuses writes even through descriptors already open and even
//     to root, for whom a chmod would change nothing.
//
// It works on any process's ledger (a server started as a child): only the
// database's name or file is needed, read here through db.
func Outage(t testing.TB, db *store.DB) (restore func()) {
	t.Helper()
	switch db.Dialect() {
	case store.Postgres:
		var name string
		if err := Reader(db).Get(&name, `SELECT current_database()`); err != nil {
			t.Fatalf("outage: name of the test database: %v", err)
		}
		return PostgresOutage(t, name)
	case store.SQLite:
		var rows []struct {
			Seq  int    `db:"seq"`
			Name string `db:"name"`
			File string `db:"file"`
		}
		if err := Reader(db).Select(&rows, `PRAGMA database_list`); err != nil || len(rows) == 0 || rows[0].File == "" {
			t.Fatalf("outage: file of the SQLite ledger: %v", err)
		}
		return SQLiteOutage(t, rows[0].File)
	}
	t.Fatalf("outage: unknown dialect %q", db.Dialect())
	return nil
}

// PostgresOutage closes database name (one this package created) to new
// connections and terminates its backends; restore opens it again.
func PostgresOutage(t testing.TB, name string) (restore func()) {
	t.Helper()
	if !strings.HasPrefix(name, "tacline_tmp_") {
		t.Fatalf("outage: refusing to close database %q, which the tests did not create", name)
	}
	admin, err := sql.Open("pgx", AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS false`); err != nil {
		admin.Close()
		t.Fatalf("outage: close database %s: %v", name, err)
	}
	if _, err := admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name); err != nil {
		admin.Close()
		t.Fatalf("outage: terminate the backends of %s: %v", name, err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `ALTER DATABASE `+name+` ALLOW_CONNECTIONS true`); err != nil {
			t.Errorf("outage: open database %s again: %v", name, err)
		}
	}
	t.Cleanup(restore)
	return restore
}

// SQLiteOutage makes the SQLite database at path and its WAL immutable;
// restore makes them writable again.
func SQLiteOutage(t testing.TB, path string) (restore func()) {
	t.Helper()
	files := []string{path}
	if _, err := os.Stat(path + "-wal"); err == nil {
		files = append(files, path+"-wal")
	}
	chattr := func(flag string) error {
		out, err := exec.Command("chattr", append([]string{flag}, files...)...).CombinedOutput()
		if err != nil {
			return &chattrError{flag: flag, out: strings.TrimSpace(string(out)), err: err}
		}
		return nil
	}
	if err := chattr("+i"); err != nil {
		t.Fatalf("outage: %v (the test needs root and a file system with the immutable attribute, such as ext4)", err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		if err := chattr("-i"); err != nil {
			t.Errorf("outage: %v", err)
		}
	}
	t.Cleanup(restore)
	return restore
}

type chattrError struct {
	flag, out string
	err       error
}

func (e *chattrError) Error() string { return "chattr " + e.flag + ": " + e.err.Error() + ": " + e.out }
