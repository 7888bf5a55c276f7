package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/internal/sqlitefile"
	"github.com/tacline/tacline/tacerr"
)

// RebuildReport says what RebuildSQLite did.
type RebuildReport struct {
	Path           string `json:"path"`
	PageSizeBefore int64  `json:"page_size_before"`
	PageSize       int64  `json:"page_size"`
	BytesBefore    int64  `json:"bytes_before"`
	Bytes          int64  `json:"bytes"`
	// NeedBytes is the free space the rebuild asked of the ledger's
	// filesystem before writing anything (its estimate of the new file,
	// with a margin); FreeBytes what the filesystem had then.
	NeedBytes int64 `json:"need_bytes"`
	FreeBytes int64 `json:"free_bytes"`
	// StaleBytes is the size of a partial copy an interrupted rebuild had
	// left next to the ledger, removed before this one began.
	StaleBytes int64 `json:"stale_bytes"`
	// Replaced says the rebuilt file took the ledger's place.
	Replaced bool          `json:"replaced"`
	Took     time.Duration `json:"-"`
	Check    CheckReport   `json:"check"` // the rebuilt copy's
	// Failed says which side a refused rebuild found at fault: "ledger"
	// (the ledger itself: PRAGMA integrity_check before the copy, or the
	// ledger check that its copy failed and the ledger failed too) or
	// "copy" (only the rebuilt copy fails the ledger check); "" otherwise.
	Failed string `json:"failed,omitempty"`
	// Integrity is what PRAGMA integrity_check found in the ledger (its
	// first lines), when it found something.
	Integrity []string `json:"integrity,omitempty"`
	// SourceCheck is the ledger's own check, run when its copy failed one.
	SourceCheck *CheckReport `json:"source_check,omitempty"`
}

// The sides a refused rebuild names (RebuildReport.Failed).
const (
	RebuildFailedLedger = "ledger"
	RebuildFailedCopy   = "copy"
)

// RebuildPhase names a step of a rebuild, for progress reports.
type RebuildPhase string

// The phases of a rebuild, in order.
const (
	RebuildVerify RebuildPhase = "verify" // PRAGMA integrity_check of the ledger
	RebuildCopy   RebuildPhase = "copy"   // VACUUM INTO the new file
	RebuildSync   RebuildPhase = "sync"   // fsync of the new file
	RebuildCheck  RebuildPhase = "check"  // ledger check of the new file
	RebuildSwap   RebuildPhase = "swap"   // rename over the ledger
)

// RebuildProgress says how far a rebuild is: the phase, and in the copy
// the new file's growth (PageSize, the new page size, and Elapsed, since
// the phase began, in every phase).
type RebuildProgress struct {
	Phase RebuildPhase
	CopyProgress
}

// RebuildSuffix names the new file of a rebuild next to the ledger
// (ledger.db-rebuild, beside SQLite's own -wal, -shm and -journal files):
// never a ledger path, and a partial one is removed by the next rebuild.
const RebuildSuffix = "-rebuild"

// Test hook: a step reached (a test's child process kills itself there).
// How often progress is reported and the free space of a directory are
// space.go's.
var rebuildStep = func(string) {}

// RebuildSQLite rewrites the SQLite ledger of cfg with pages of pageSize
// bytes (a new ledger has 1 KiB pages; one created before migration 0014
// keeps 4 KiB ones), offline, and checks it before it takes the ledger's
// place.
//
//  1. It takes SQLite's exclusive lock on the ledger and keeps it to the
//     end: a ledger that a server or another command has open is refused
//     (invalid_state), and a server started meanwhile cannot open it. It
//     folds the WAL into the file (wal_checkpoint(TRUNCATE)) and runs
//     PRAGMA integrity_check on it: a damaged ledger is refused
//     (ledger_invariant, Failed "ledger", Integrity), nothing written.
//  2. It measures what it will write, the pages in use (page_count -
//     freelist_count) at the new page size plus a margin (NeedBytes), and
//     refuses with insufficient_space when the ledger's filesystem has less
//     free (statfs), before writing anything.
//  3. VACUUM INTO ledger.db-rebuild in the ledger's directory (one new
//     file: no temporary database, no rollback journal of the ledger),
//     then fsync, then opens it as a ledger (WAL mode) and runs Check.
//  4. Only a copy that passes Check replaces the ledger: rename over it,
//     directory fsync. The old file's space is freed when the lock is let
//     go; its header is overwritten first, so a process that opened the old
//     file while waiting for the lock gets "not a database" instead of
//     writing to a file no longer in the directory.
//
// On any failure before the rename (a refused check included) the new file
// is removed and the ledger is as it was; a rebuild killed before the
// rename leaves the ledger as it was and a partial ledger.db-rebuild, which
// the next rebuild removes (StaleBytes). Peak use: the ledger plus the new
// file. progress, when not nil, is called at each phase's start and about
// every second of the copy and the check. Errors: invalid_input
// (page_size; database.driver: a PostgreSQL ledger), not_found (no ledger
// file), invalid_state (in use), insufficient_space, ledger_invariant (the
// ledger fails integrity_check, or the rebuilt copy fails Check and was
// not put in place: then the ledger itself is checked once the lock is let
// go, and the error and Failed say whether the ledger fails it too, a
// fault the rebuild copied, or the copy alone).
func RebuildSQLite(ctx context.Context, cfg Config, pageSize int64, progress func(RebuildProgress)) (RebuildReport, error) {
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
	if progress == nil {
		progress = func(RebuildProgress) {}
	}
	start := time.Now()
	err = rebuild(ctx, cfg, &rep, progress)
	if ctx.Err() == nil {
		err = blameRefusedCopy(ctx, cfg, &rep, err)
	}
	rep.Took = time.Since(start)
	if err != nil && ctx.Err() != nil && !rep.Replaced {
		err = tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "ledger rebuild interrupted; the ledger %s is as it was (the new file was removed)", rep.Path)
	}
	if err != nil {
		return rep, err
	}
	if st, err := os.Stat(rep.Path); err == nil {
		rep.Bytes = st.Size()
	}
	return rep, nil
}

// rebuild runs the steps of RebuildSQLite once the inputs are valid.
func rebuild(ctx context.Context, cfg Config, rep *RebuildReport, progress func(RebuildProgress)) error {
	// A symbolic link is followed, as SQLite does: the new file goes next
	// to the file itself (a rename works only within its filesystem).
	path, err := filepath.EvalSymlinks(rep.Path)
	if err != nil {
		return tacerr.Field(tacerr.NotFound, "database.dsn", "no SQLite ledger at %s: %v", rep.Path, err)
	}
	tmp := path + RebuildSuffix
	// The ledger's file itself, to mark once a rebuilt one has replaced
	// it. Closed last: closing any descriptor of a file drops the
	// process's POSIX locks on it, SQLite's included.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "open the SQLite ledger %s", path)
	}
	defer f.Close()
	old, err := lockSQLite(ctx, path)
	if err != nil {
		return err
	}
	defer old.close()
	var busy, frames, done int64
	if err := old.c.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &frames, &done); err != nil {
		return old.inUse(err)
	}
	if busy != 0 {
		return old.inUse(sqlite3.Error{Code: sqlite3.ErrBusy})
	}
	progress(RebuildProgress{Phase: RebuildVerify})
	if err := checkIntegrity(ctx, old.c, rep); err != nil {
		return err
	}
	// The lock is held: no other rebuild of this ledger runs, so a file
	// under the rebuild's name is what an interrupted one left.
	if rep.StaleBytes, err = removeRebuildFiles(tmp); err != nil {
		return err
	}
	used, pageSize, err := sqliteUsed(ctx, old.c)
	if err != nil {
		return err
	}
	rep.PageSizeBefore = pageSize
	estimate := rebuildEstimate(used, rep.PageSizeBefore, rep.PageSize)
	space := spaceNeed{Task: "ledger rebuild", Dir: filepath.Dir(path), Estimate: estimate,
		What:      fmt.Sprintf("the new file it writes next to the ledger (about %s at %d-byte pages)", sizeText(estimate), rep.PageSize),
		Elsewhere: "or move the ledger to a larger filesystem"}
	if rep.NeedBytes, rep.FreeBytes, err = space.check(); err != nil {
		return err
	}

	placed := false
	// Runs before the lock is let go: no other rebuild can have begun
	// writing a file of that name.
	defer func() {
		if !placed {
			_, _ = removeRebuildFiles(tmp)
		}
	}()
	if _, err := old.c.ExecContext(ctx, "PRAGMA page_size = "+strconv.FormatInt(rep.PageSize, 10)); err != nil {
		return translate(err, "set the new file's page size")
	}
	err = vacuumInto(ctx, old.c, tmp, rep.PageSize, estimate, "ledger rebuild", func(p CopyProgress) {
		progress(RebuildProgress{Phase: RebuildCopy, CopyProgress: p})
	})
	if err == nil {
		// Interrupted while the copy was ending (SQLite finished it before
		// it saw the interrupt): stop here, not after syncing the copy.
		err = ctx.Err()
	}
	if err != nil {
		return err
	}
	rebuildStep("copied")
	progress(RebuildProgress{Phase: RebuildSync, CopyProgress: CopyProgress{PageSize: rep.PageSize}})
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := checkRebuilt(ctx, cfg, tmp, rep, progress); err != nil {
		return err
	}
	rebuildStep("checked")
	progress(RebuildProgress{Phase: RebuildSwap, CopyProgress: CopyProgress{PageSize: rep.PageSize}})
	placed, err = swapLedger(ctx, old, f, path, tmp)
	rep.Replaced = placed
	return err
}

// lockedSQLite is one connection to a SQLite file in exclusive locking
// mode, holding its EXCLUSIVE lock until closed.
type lockedSQLite struct {
	path string
	h    *sql.DB
	c    *sql.Conn
}

// lockSQLite opens path and takes its exclusive lock (invalid_state when
// another connection, in this process or another, has it open).
func lockSQLite(ctx context.Context, path string) (*lockedSQLite, error) {
	h, err := sql.Open("sqlite3", sqlitefile.URI(path, "_busy_timeout=0&_synchronous=FULL"))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s", path)
	}
	l := &lockedSQLite{path: path, h: h}
	if l.c, err = h.Conn(ctx); err != nil {
		h.Close()
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s", path)
	}
	for _, q := range []string{"PRAGMA locking_mode = EXCLUSIVE", "BEGIN EXCLUSIVE", "COMMIT"} {
		if _, err := l.c.ExecContext(ctx, q); err != nil {
			l.close()
			return nil, l.inUse(err)
		}
	}
	return l, nil
}

// close lets the lock go (once; later calls do nothing).
func (l *lockedSQLite) close() {
	if l.c != nil {
		l.c.Close()
		l.c = nil
	}
	l.h.Close()
}

// inUse names a busy or locked ledger; other errors go to translate.
func (l *lockedSQLite) inUse(err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked) {
		return tacerr.Field(tacerr.InvalidState, "database.dsn",
			"the ledger %s is in use (a tacline serve or another command has it open): stop it, then rebuild", l.path)
	}
	return translate(err, "rebuild the SQLite ledger")
}

// rebuildEstimate is the size of the new file VACUUM INTO writes from used
// bytes of pages in use at page size from, with pages of size to.
// Measured on a prefilled ledger of 3x10^5 devices (docs/benchmarks.md,
// "Session 9 (branch rebuildops)"): the copy at the same or a larger page
// size is at most the pages in use (0.88-1.00 of them); smaller pages pack
// the same rows into more bytes, 1.03, 1.11 and 1.23 times for 2, 4 and 8
// times smaller pages. The estimate adds 4 % times the square of the
// halvings (4, 16, 36 %).
func rebuildEstimate(used, from, to int64) int64 {
	var halvings int64
	for p := from; p > to; p /= 2 {
		halvings++
	}
	return used + used*4*halvings*halvings/100
}

// removeRebuildFiles removes the new file of a rebuild and SQLite's files
// beside it, and returns the bytes they held.
func removeRebuildFiles(tmp string) (int64, error) {
	return removeSQLiteFiles(tmp, "a ledger rebuild's new file")
}

// syncFile makes the file at path durable.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "open %s", path)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "fsync %s", path)
	}
	return nil
}

// checkRebuilt opens the new file as a ledger (which puts it in WAL mode),
// checks its page size and runs Check on it; after Close no WAL of it is
// left.
func checkRebuilt(ctx context.Context, cfg Config, tmp string, rep *RebuildReport, progress func(RebuildProgress)) error {
	start := time.Now()
	progress(RebuildProgress{Phase: RebuildCheck, CopyProgress: CopyProgress{PageSize: rep.PageSize}})
	cfg.DSN = tmp
	db, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	var got int64
	if err := db.w.GetContext(ctx, &got, "PRAGMA page_size"); err != nil {
		return translate(err, "read the page size of "+tmp)
	}
	if got != rep.PageSize {
		return tacerr.New(tacerr.Internal, "the rebuilt ledger %s has %d-byte pages, not %d", tmp, got, rep.PageSize)
	}
	stop := everyTick(func() {
		progress(RebuildProgress{Phase: RebuildCheck, CopyProgress: CopyProgress{PageSize: rep.PageSize, Elapsed: time.Since(start)}})
	})
	rep.Check, err = db.Check(ctx)
	stop()
	if err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return translate(err, "close "+tmp)
	}
	if st, err := os.Stat(tmp + "-wal"); err == nil && st.Size() > 0 {
		return tacerr.New(tacerr.Internal, "the rebuilt ledger %s kept a WAL of %d bytes after it was closed", tmp, st.Size())
	}
	if !rep.Check.OK() {
		return errCopyRefused // blameRefusedCopy says whose fault it is
	}
	return nil
}

// errCopyRefused is checkRebuilt's refusal of a copy that fails Check.
var errCopyRefused = errors.New("the rebuilt copy fails the ledger check")

// integrityLines is how many lines of PRAGMA integrity_check a refusal
// keeps.
const integrityLines = 10

// checkIntegrity runs PRAGMA integrity_check on the ledger (c, under the
// rebuild's lock) and refuses a damaged one: a copy of it would carry or,
// with its indexes rebuilt from the tables, hide the damage.
func checkIntegrity(ctx context.Context, c *sql.Conn, rep *RebuildReport) error {
	rows, err := c.QueryContext(ctx, fmt.Sprintf("PRAGMA integrity_check(%d)", integrityLines))
	if err != nil {
		return translate(err, "PRAGMA integrity_check of the ledger "+rep.Path)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return translate(err, "PRAGMA integrity_check of the ledger "+rep.Path)
		}
		found = append(found, line)
	}
	if err := rows.Err(); err != nil {
		return translate(err, "PRAGMA integrity_check of the ledger "+rep.Path)
	}
	if len(found) == 1 && found[0] == "ok" {
		return nil
	}
	rep.Failed, rep.Integrity = RebuildFailedLedger, found
	return tacerr.Field(tacerr.LedgerInvariant, "database.dsn",
		"the ledger %s itself is damaged (PRAGMA integrity_check: %s); the rebuild wrote nothing and the ledger is as it was: restore it from the last good backup (`tacline restore`, docs/operations.md), then rebuild the restored ledger",
		rep.Path, strings.Join(found, "; "))
}

// blameRefusedCopy words the refusal of a copy that failed Check (err is
// errCopyRefused; other errors pass) by the side at fault: it checks the
// ledger itself, now that the rebuild's lock is let go. A ledger that
// fails too was already inconsistent (VACUUM INTO copies its rows as they
// are); one that passes points at the copy.
func blameRefusedCopy(ctx context.Context, cfg Config, rep *RebuildReport, err error) error {
	if !errors.Is(err, errCopyRefused) {
		return err
	}
	first := rep.Check.Violations[0]
	db, oerr := Open(ctx, cfg)
	if oerr == nil {
		var src CheckReport
		src, oerr = db.Check(ctx)
		db.Close()
		if oerr == nil {
			rep.SourceCheck = &src
		}
	}
	switch {
	case oerr != nil:
		rep.Failed = RebuildFailedCopy
		return tacerr.Wrap(tacerr.LedgerInvariant, oerr,
			"the rebuilt copy fails the ledger check (%s), so it did not replace the ledger %s, which is as it was; checking the ledger itself failed too: run `tacline ledger check`", first, rep.Path)
	case !rep.SourceCheck.OK():
		rep.Failed = RebuildFailedLedger
		return tacerr.Field(tacerr.LedgerInvariant, "database.dsn",
			"the ledger %s itself fails the ledger check (%s; its rebuilt copy, which holds the same rows, fails the same way): nothing was replaced and the ledger is as it was; find the cause with `tacline ledger check` and restore the last good backup (`tacline restore`, docs/operations.md) before rebuilding",
			rep.Path, rep.SourceCheck.Violations[0])
	default:
		rep.Failed = RebuildFailedCopy
		return tacerr.New(tacerr.LedgerInvariant,
			"the rebuilt copy fails the ledger check (%s) while the ledger %s passes it: the copy was removed and did not replace the ledger, which is as it was; run the rebuild again, and if the copy fails again keep the ledger as it is and report the violation",
			first, rep.Path)
	}
}

// swapLedger renames tmp over path while old holds the old file's lock and
// a lock on tmp keeps other processes out of the new one until both are
// let go; then it marks the old file (f). placed says the rename is done.
func swapLedger(ctx context.Context, old *lockedSQLite, f *os.File, path, tmp string) (placed bool, err error) {
	nw, err := lockSQLite(ctx, tmp)
	if err != nil {
		return false, err
	}
	defer nw.close()
	if err := os.Rename(tmp, path); err != nil {
		return false, tacerr.Wrap(tacerr.Unavailable, err, "put the rebuilt ledger in place (rename %s to %s); the ledger is as it was", tmp, path)
	}
	if err := atomicfile.SyncDir(filepath.Dir(path)); err != nil {
		return true, tacerr.Wrap(tacerr.Unavailable, err,
			"the rebuilt ledger was renamed to %s, but its directory could not be synced: run tacline ledger check before serving", path)
	}
	rebuildStep("renamed")
	// Nobody can find the old file by its name any more; a process that
	// opened it before the rename and waits for its lock must not find a
	// ledger in it. (Another hard link to it would still name it: left.)
	if st, err := f.Stat(); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink == 0 {
			_, _ = f.WriteAt([]byte("not a ledger:rebuilt"), 0)
		}
	}
	old.close()
	// The lock on the new file kept a WAL and its index under the file's
	// first name: let go, then removed.
	nw.close()
	for _, p := range []string{tmp + "-wal", tmp + "-shm"} {
		_ = os.Remove(p)
	}
	return true, nil
}
