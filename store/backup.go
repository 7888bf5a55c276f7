package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tacline/tacline/internal/sqlitefile"
	"github.com/tacline/tacline/tacerr"
)

// SQL of backups.
const (
	qVacuumInto       = `VACUUM INTO ?`
	qPostgresTables   = `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`
	qScratchSchemas   = `SELECT COALESCE(string_agg(nspname, ', ' ORDER BY nspname), '') FROM pg_namespace WHERE starts_with(nspname, '` + pgScratchPrefix + `')`
	qSQLiteIntegrity  = `PRAGMA integrity_check`
	backupSQLiteFile  = "ledger.db"
	backupPostgresDmp = "ledger.pgdump"
)

// Backup writes a consistent copy of the ledger into dir, while the ledger
// is in use, and returns the file's name (relative to dir).
//
// SQLite: it measures the pages in use (page_count - freelist_count, at
// the page size) and refuses with insufficient_space, writing nothing,
// when dir's filesystem has less free than that plus a margin (2 %, at
// least 64 MiB, spaceMargin); then VACUUM INTO on
// a read connection, which copies one read snapshot (a WAL reader never
// blocks the writer) into a new, compact database file. progress, when not
// nil, is called as the copy begins, about every second of it and at its
// end. PostgreSQL: pg_dump in custom format, which reads one REPEATABLE
// READ snapshot; pg_dump must be on PATH and no older than the server
// (Debian: postgresql-client). A compressed dump's size cannot be told
// beforehand: no space is measured, and progress is not called.
//
// A disk that fills during the copy (SQLITE_FULL; pg_dump's "No space left
// on device") is insufficient_space. On any error the partial copy is
// removed; the ledger is never written.
func (db *DB) Backup(ctx context.Context, dir string, dsn string, progress func(CopyProgress)) (string, error) {
	if progress == nil {
		progress = func(CopyProgress) {}
	}
	switch db.dialect {
	case SQLite:
		out := filepath.Join(dir, backupSQLiteFile)
		err := db.backupSQLite(ctx, out, progress)
		if err != nil {
			if _, rerr := removeSQLiteFiles(out, "a backup's partial ledger copy"); rerr != nil {
				return "", errors.Join(err, rerr)
			}
			return "", err
		}
		return backupSQLiteFile, nil
	default:
		out := filepath.Join(dir, backupPostgresDmp)
		err := run(ctx, "pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", out, "--dbname", dsn)
		if err != nil {
			if rerr := os.Remove(out); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, tacerr.Wrap(tacerr.Unavailable, rerr, "remove %s (a backup's partial dump): remove it by hand", out))
			}
			return "", pgDumpSpace(err, dir)
		}
		return backupPostgresDmp, nil
	}
}

// backupSQLite copies the ledger into out: space check, then VACUUM INTO,
// both on one read connection.
func (db *DB) backupSQLite(ctx context.Context, out string, progress func(CopyProgress)) error {
	c, err := db.r.Conn(ctx)
	if err != nil {
		return translate(err, "open a read connection for the backup")
	}
	defer c.Close()
	used, pageSize, err := sqliteUsed(ctx, c)
	if err != nil {
		return err
	}
	space := spaceNeed{Task: "backup", Dir: filepath.Dir(out), Estimate: used,
		What:      fmt.Sprintf("the ledger's copy (about %s: its pages in use)", sizeText(used)),
		Elsewhere: "or give --to a directory on a larger filesystem"}
	if _, _, err := space.check(); err != nil {
		return err
	}
	return vacuumInto(ctx, c, out, pageSize, used, "backup", progress)
}

// noSpace is how pg_dump (the C library's strerror(ENOSPC)) says the disk
// is full.
const noSpace = "No space left on device"

// pgDumpSpace turns a pg_dump failure for lack of space (the partial dump
// removed) into insufficient_space; other errors are returned as they are.
func pgDumpSpace(err error, dir string) error {
	e, ok := tacerr.As(err)
	if !ok || !strings.Contains(e.Message, noSpace) {
		return err
	}
	return tacerr.New(tacerr.InsufficientSpace,
		"the filesystem of %s filled up during the backup (%s); the partial dump was removed and the ledger is as it was. Free space there or give --to a directory on a larger filesystem (docs/operations.md, \"Backup space\", says how to size it), then run it again", dir, e.Message)
}

// Restore puts the backup file (made by Backup) into the database cfg
// names, which must not hold a ledger: on SQLite the file must not exist
// (it is written from a copy and checked with PRAGMA integrity_check); on
// PostgreSQL the database must exist and hold no tables. Either way the
// ledger's schema must be the one tacline's migrations give at its
// migration version (ledger_invariant; newer than this tacline:
// invalid_state): on SQLite the copy's, before it is opened for writing
// (schemacheck.go); on PostgreSQL the dump's, before pg_restore runs any of
// it (pgschemacheck.go), which then loads it in one transaction (all or
// nothing). It does not check the ledger's invariants: open it and call
// Check.
func Restore(ctx context.Context, cfg Config, file string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Driver == SQLite {
		path := sqlitePath(cfg.DSN)
		if err := NoSQLiteLedger(path); err != nil {
			return err
		}
		if err := restoreCopy(file, path, "the restored ledger, a copy of the backup's ledger file", "or give database.dsn a path on a larger filesystem"); err != nil {
			return err
		}
		c, err := sql.Open("sqlite3", sqlitefile.URI(path, "mode=ro"))
		if err != nil {
			return tacerr.Wrap(tacerr.Unavailable, err, "open restored ledger %s", path)
		}
		defer c.Close()
		var res string
		if err := c.QueryRowContext(ctx, qSQLiteIntegrity).Scan(&res); err != nil {
			return translate(err, "check the restored SQLite file")
		}
		if res != "ok" {
			return tacerr.New(tacerr.LedgerInvariant, "restored SQLite file %s fails PRAGMA integrity_check: %s", path, res)
		}
		return checkSQLiteSchema(ctx, c, path)
	}
	c, err := sql.Open("pgx", cfg.DSN)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "connect to the PostgreSQL database to restore into")
	}
	defer c.Close()
	var n int
	if err := c.QueryRowContext(ctx, qPostgresTables).Scan(&n); err != nil {
		return translate(err, "look at the PostgreSQL database to restore into")
	}
	if n > 0 {
		return tacerr.New(tacerr.Conflict, "the PostgreSQL database %s holds %d tables: restore into a new, empty database (createdb), never over a ledger", redactDSN(cfg.DSN), n)
	}
	var scratch string
	if err := c.QueryRowContext(ctx, qScratchSchemas).Scan(&scratch); err != nil {
		return translate(err, "look at the PostgreSQL database to restore into")
	}
	if scratch != "" {
		return tacerr.New(tacerr.Conflict, "the PostgreSQL database %s holds the scratch schema(s) %s of an interrupted restore: drop them (DROP SCHEMA ... CASCADE) or restore into a new, empty database (createdb)", redactDSN(cfg.DSN), scratch)
	}
	// The dump is judged and loaded from one private copy: whoever can
	// write the backup set could otherwise put another dump in its place
	// between the check and pg_restore.
	dir, err := os.MkdirTemp("", "tacline-restore-")
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "make a private directory for the dump's copy (TMPDIR)")
	}
	defer os.RemoveAll(dir)
	private := filepath.Join(dir, backupPostgresDmp)
	if err := restoreCopy(file, private, "a private copy of the backup's dump", "or set TMPDIR to a directory on a larger filesystem"); err != nil {
		return err
	}
	if err := checkPostgresDump(ctx, c, cfg.DSN, private); err != nil {
		return err
	}
	return run(ctx, "pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error", "--dbname", cfg.DSN, private)
}

// NoSQLiteLedger returns conflict when path, or a file SQLite would read
// with it (its -wal, -journal or -shm), exists: a restored ledger goes only
// where nothing of an old one is left. A WAL or rollback journal is not
// bound to its database file: one left by a crashed ledger whose file was
// moved aside would be replayed into the restored ledger on its first open.
func NoSQLiteLedger(path string) error {
	for _, p := range []string{path, path + "-wal", path + "-journal", path + "-shm"} {
		if _, err := os.Lstat(p); err == nil {
			return tacerr.New(tacerr.Conflict, "%s exists: restore into a path that holds no ledger (move the old ledger aside with its -wal, -journal and -shm files first)", p)
		}
	}
	return nil
}

// SQLitePath is the file a SQLite DSN names (what Open opens): without a
// "file:" prefix and a "?query".
func SQLitePath(dsn string) string { return sqlitePath(dsn) }

func sqlitePath(dsn string) string {
	path := strings.TrimPrefix(dsn, "file:")
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	return path
}

// run runs a PostgreSQL client tool; its error output becomes the error.
func run(ctx context.Context, name string, args ...string) error {
	return runTo(ctx, nil, name, args...)
}

// runTo is run with the tool's standard output written to stdout (nil:
// discarded).
func runTo(ctx context.Context, stdout io.Writer, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return tacerr.New(tacerr.Unavailable, "%s is not installed: install the PostgreSQL client tools (Debian: apt-get install postgresql-client)", name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return tacerr.New(tacerr.Unavailable, "%s failed: %s", name, msg)
		}
		return tacerr.Wrap(tacerr.Unavailable, err, "%s", name)
	}
	return nil
}

// restoreCopy copies a backup's ledger file (SQLite) or dump (PostgreSQL,
// a private copy) to path: refused with insufficient_space, writing
// nothing, when path's filesystem has less free than the file and a margin
// (spaceNeed, as a backup; what names the copy, with its size added,
// elsewhere where else it could go); a disk that fills during the copy is
// insufficient_space too, the partial copy removed.
func restoreCopy(file, path, what, elsewhere string) error {
	st, err := os.Stat(file)
	if err != nil {
		return tacerr.Wrap(tacerr.InvalidInput, err, "read the backup set's file %s", file)
	}
	dir := filepath.Dir(path)
	space := spaceNeed{Task: "restore", Dir: dir, Estimate: st.Size(),
		What: fmt.Sprintf("%s (%s)", what, sizeText(st.Size())), Elsewhere: elsewhere}
	if _, _, err := space.check(); err != nil {
		return err
	}
	if err := copyFile(file, path); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return tacerr.Wrap(tacerr.InsufficientSpace, err,
				"the filesystem of %s filled up during the restore's copy of the ledger (something else wrote there after it measured the free space); the partial copy was removed: free space there, then run it again", dir)
		}
		return tacerr.Wrap(tacerr.Unavailable, err, "copy %s to %s", file, path)
	}
	return nil
}

func copyFile(from, to string) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	f, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(to)
		}
	}()
	if _, err = io.Copy(f, in); err != nil {
		return err
	}
	return f.Sync()
}
