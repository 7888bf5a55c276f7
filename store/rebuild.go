package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/internal/sqlitefile"
	"github.com/tacline/tacline/tacerr"
)

// RebuildReport says what RebuildSQLite did.
type RebuildReport struct {
	Path           string        `json:"path"`
	PageSizeBefore int64         `json:"page_size_before"`
	PageSize       int64         `json:"page_size"`
	BytesBefore    int64         `json:"bytes_before"`
	Bytes          int64         `json:"bytes"`
	Took           time.Duration `json:"-"`
	Check          CheckReport   `json:"check"`
}

// RebuildSQLite rewrites the SQLite ledger of cfg with pages of pageSize
// bytes (a new ledger has 1 KiB pages; one created before migration 0014
// keeps 4 KiB ones), offline, then opens it and runs Check on it. The
// rewrite is SQLite's VACUUM in rollback-journal mode (WAL cannot change
// the page size), durable at every step: an interrupted rebuild leaves the
// ledger as it was, or rebuilt. It needs free space for two more copies of
// the ledger (VACUUM's temporary database and its journal).
//
// It holds SQLite's exclusive lock from the start until the ledger is
// back in WAL mode: a ledger that a server or another command has open is
// refused (invalid_state), and a server started meanwhile cannot open it.
// progress, when not nil, is called about every second while the rewrite
// runs. Errors: invalid_input (page_size; database.driver: a PostgreSQL
// ledger), not_found (no ledger file), invalid_state (in use),
// ledger_invariant (the rebuilt ledger fails Check).
func RebuildSQLite(ctx context.Context, cfg Config, pageSize int64, progress func(elapsed time.Duration)) (RebuildReport, error) {
	var rep RebuildReport
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	if cfg.Driver != SQLite {
		return rep, tacerr.Field(tacerr.InvalidInput, "database.driver",
			"ledger rebuild rewrites a SQLite ledger's file; a PostgreSQL ledger's page size is the server's (fixed when PostgreSQL is built)")
	}
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return rep, tacerr.Field(tacerr.InvalidInput, "page_size", "must be a power of two from 512 to 65536, not %d", pageSize)
	}
	rep.Path, rep.PageSize = sqlitePath(cfg.DSN), pageSize
	st, err := os.Stat(rep.Path)
	if err != nil {
		return rep, tacerr.Field(tacerr.NotFound, "database.dsn", "no SQLite ledger at %s: %v", rep.Path, err)
	}
	rep.BytesBefore = st.Size()
	start := time.Now()
	if err := rebuildFile(ctx, &rep, progress); err != nil {
		return rep, err
	}
	rep.Took = time.Since(start)
	if st, err := os.Stat(rep.Path); err == nil {
		rep.Bytes = st.Size()
	}
	db, err := Open(ctx, cfg)
	if err != nil {
		return rep, err
	}
	defer db.Close()
	if rep.Check, err = db.Check(ctx); err != nil {
		return rep, err
	}
	return rep, rep.Check.Err()
}

// rebuildFile runs the rewrite on one connection in exclusive locking
// mode.
func rebuildFile(ctx context.Context, rep *RebuildReport, progress func(time.Duration)) error {
	h, err := sql.Open("sqlite3", sqlitefile.URI(rep.Path, "_busy_timeout=0&_synchronous=FULL"))
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s", rep.Path)
	}
	defer h.Close()
	c, err := h.Conn(ctx)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s", rep.Path)
	}
	defer c.Close()
	inUse := func(err error) error {
		var se sqlite3.Error
		if errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked) {
			return tacerr.Field(tacerr.InvalidState, "database.dsn",
				"the ledger %s is in use (a tacline serve or another command has it open): stop it, then rebuild", rep.Path)
		}
		return translate(err, "rebuild the SQLite ledger")
	}
	// The exclusive lock first (leaving WAL needs every other connection
	// gone), then kept until this connection closes.
	// (journal_mode answers the mode it is in: still wal when it could not
	// leave it.)
	var mode string
	if _, err := c.ExecContext(ctx, "PRAGMA locking_mode = EXCLUSIVE"); err != nil {
		return inUse(err)
	}
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode = DELETE").Scan(&mode); err != nil {
		return inUse(err)
	}
	if mode != "delete" {
		return inUse(sqlite3.Error{Code: sqlite3.ErrBusy})
	}
	for _, q := range []string{"BEGIN EXCLUSIVE", "COMMIT"} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return inUse(err)
		}
	}
	if err := c.QueryRowContext(ctx, "PRAGMA page_size").Scan(&rep.PageSizeBefore); err != nil {
		return translate(err, "read the page size")
	}
	done := make(chan struct{})
	if progress != nil {
		start := time.Now()
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					progress(time.Since(start))
				}
			}
		}()
	}
	_, err = c.ExecContext(ctx, "PRAGMA page_size = "+strconv.FormatInt(rep.PageSize, 10))
	if err == nil {
		_, err = c.ExecContext(ctx, "VACUUM")
	}
	close(done)
	if err != nil {
		return translate(err, "rewrite the SQLite ledger (VACUUM)")
	}
	var got int64
	if err := c.QueryRowContext(ctx, "PRAGMA page_size").Scan(&got); err != nil {
		return translate(err, "read the page size")
	}
	if got != rep.PageSize {
		return tacerr.New(tacerr.Internal, "the rebuilt ledger %s has %d-byte pages, not %d", rep.Path, got, rep.PageSize)
	}
	if err := c.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil || mode != "wal" {
		return tacerr.New(tacerr.Unavailable, "put the rebuilt ledger %s back in WAL mode: %q, %v", rep.Path, mode, err)
	}
	return nil
}
