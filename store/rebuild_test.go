package store_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestRebuildSQLite: ledger rebuild rewrites a SQLite ledger with the
// page size asked for (4 KiB, then back to 1 KiB) keeping every row (the
// pool counts, an IMEI's record, ledger check), refuses a ledger another
// connection has open (a running server) and leaves it as it was, and
// refuses a PostgreSQL ledger and page sizes SQLite has not.
func TestRebuildSQLite(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t, store.SQLite)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, db, 0, 999)
	r, err := reserve(db, "r1", "A", 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := reserve(db, "more"+string(rune('a'+i)), "A", 2); err != nil {
			t.Fatal(err)
		}
	}
	pageSize := func(db *store.DB) int64 {
		t.Helper()
		var n int64
		if err := storetest.Reader(db).Get(&n, "PRAGMA page_size"); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := pageSize(db); got != 1024 {
		t.Fatalf("a new ledger has %d-byte pages, want 1024", got)
	}
	// In use: refused, the ledger untouched and still serving.
	_, err = store.RebuildSQLite(ctx, cfg, 4096, nil)
	if e := wantCode(t, err, tacerr.InvalidState); e.Field != "database.dsn" {
		t.Fatalf("rebuild of a ledger in use: %v", e)
	}
	if _, err := reserve(db, "while-refused", "A", 2); err != nil {
		t.Fatalf("the ledger after a refused rebuild: %v", err)
	}
	before, err := db.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{4096, 1024} {
		var phases []store.RebuildPhase
		rep, err := store.RebuildSQLite(ctx, cfg, size, func(p store.RebuildProgress) {
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		})
		if err != nil || rep.PageSize != size || !rep.Check.OK() || rep.Check.IMEIs != 2*22 || !rep.Replaced || rep.NeedBytes <= 0 || rep.FreeBytes < rep.NeedBytes {
			t.Fatalf("rebuild to %d: %+v, %v", size, rep, err)
		}
		if fmt.Sprint(phases) != "[verify copy sync check swap]" {
			t.Fatalf("rebuild to %d: phases %v", size, phases)
		}
		if left := rebuildFiles(t, cfg.DSN); len(left) > 0 {
			t.Fatalf("rebuild to %d left %v", size, left)
		}
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := pageSize(db); got != size {
			t.Fatalf("after rebuild to %d: %d-byte pages", size, got)
		}
		after, err := db.Pools(ctx)
		if err != nil || len(after) != 1 || after[0] != before[0] {
			t.Fatalf("pools after rebuild %+v, %v; before %+v", after, err, before)
		}
		rec, err := db.LookupIMEI(ctx, r.Devices[0][0])
		if err != nil || rec.State != store.StateReserved || rec.DeviceSerial != "dev-r1" {
			t.Fatalf("IMEI after rebuild %+v, %v", rec, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	_, err = store.RebuildSQLite(ctx, store.Config{Driver: store.Postgres, DSN: "postgres://x@127.0.0.1:1/none"}, 1024, nil)
	if e := wantCode(t, err, tacerr.InvalidInput); e.Field != "database.driver" {
		t.Fatalf("rebuild of a PostgreSQL ledger: %v", e)
	}
	for _, size := range []int64{1000, 256, 131072} {
		_, err = store.RebuildSQLite(ctx, cfg, size, nil)
		if e := wantCode(t, err, tacerr.InvalidInput); e.Field != "page_size" {
			t.Fatalf("page size %d: %v", size, e)
		}
	}
}

// rebuildFiles lists the files a rebuild writes next to the ledger at path
// (ledger.db-rebuild and SQLite's files beside it) that exist.
func rebuildFiles(t *testing.T, path string) []string {
	t.Helper()
	left, err := filepath.Glob(path + store.RebuildSuffix + "*")
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// fileHash is the SHA-256 of the file at path.
func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// rebuildLedger makes a closed SQLite ledger of 20 reservations and about
// 8 MiB of padding in a table of its own (a copy that takes a while, with
// the file growing as it is written), and returns its configuration.
func rebuildLedger(t *testing.T) store.Config {
	t.Helper()
	ctx := context.Background()
	cfg := storetest.Config(t, store.SQLite)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, db, 0, 999)
	for i := range 20 {
		if _, err := reserve(db, fmt.Sprint("r", i), "A", 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fileExec(t, cfg.DSN, `CREATE TABLE pad(b BLOB)`,
		`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 8000) INSERT INTO pad SELECT randomblob(1000) FROM n`)
	return cfg
}

// fileExec runs statements on the SQLite file at path outside the store.
func fileExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	execOn(t, "sqlite3", path, stmts...)
}

// execOn runs statements on the database driver and dsn reach, outside
// the store.
func execOn(t *testing.T, driver, dsn string, stmts ...string) {
	t.Helper()
	h, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, q := range stmts {
		if _, err := h.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// ledgerState is what a test compares before and after a rebuild that
// must not have changed the ledger: its page size and pool counts, with a
// ledger check.
func ledgerState(t *testing.T, cfg store.Config) string {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep := mustCheck(t, db)
	pools, err := db.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	if err := storetest.Reader(db).Get(&size, "PRAGMA page_size"); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("page size %d, %d IMEIs, pools %+v", size, rep.IMEIs, pools)
}

// TestRebuildSQLiteRefusedBeforeWriting: a rebuild measures the space it
// needs before it writes anything, refuses with insufficient_space naming
// the directory, what it needs and what is free when the filesystem has
// less, and leaves the ledger file byte for byte as it was; with exactly
// the space asked for it goes ahead.
func TestRebuildSQLiteRefusedBeforeWriting(t *testing.T) {
	ctx := context.Background()
	cfg := rebuildLedger(t)
	// The rebuild folds the WAL into the file first: compare after that.
	fileExec(t, cfg.DSN, "PRAGMA wal_checkpoint(TRUNCATE)")
	before := fileHash(t, cfg.DSN)
	free := int64(1 << 20)
	defer store.SetRebuildHooks(0, func(dir string) (int64, error) {
		if dir != filepath.Dir(cfg.DSN) {
			t.Errorf("free space asked of %s, not the ledger's directory", dir)
		}
		return free, nil
	}, func(step string) { t.Errorf("a refused rebuild reached step %s", step) })()
	rep, err := store.RebuildSQLite(ctx, cfg, 1024, nil)
	e := wantCode(t, err, tacerr.InsufficientSpace)
	// The need: the pages in use (over 8 MiB) plus the margin (64 MiB).
	if rep.NeedBytes < 8<<20+64<<20 || rep.FreeBytes != free || rep.Replaced {
		t.Fatalf("refused rebuild: %+v", rep)
	}
	for _, want := range []string{filepath.Dir(cfg.DSN), fmt.Sprintf("(%d bytes)", rep.NeedBytes), fmt.Sprintf("(%d bytes) free", rep.FreeBytes), "nothing was written"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if fileHash(t, cfg.DSN) != before || len(rebuildFiles(t, cfg.DSN)) > 0 {
		t.Fatalf("a refused rebuild changed the ledger or left %v", rebuildFiles(t, cfg.DSN))
	}
	// One byte less than the need: refused; exactly the need: done.
	free = rep.NeedBytes - 1
	if _, err := store.RebuildSQLite(ctx, cfg, 1024, nil); !tacerr.Is(err, tacerr.InsufficientSpace) {
		t.Fatalf("with one byte less than the need: %v", err)
	}
	free++
	defer store.SetRebuildHooks(0, nil, func(string) {})()
	if rep, err := store.RebuildSQLite(ctx, cfg, 1024, nil); err != nil || !rep.Replaced {
		t.Fatalf("rebuild with the space it asked for: %+v, %v", rep, err)
	}
}

// TestRebuildSQLiteInterrupted: a rebuild whose context ends during the
// copy (Ctrl-C) removes the partial copy and leaves the ledger as it was.
func TestRebuildSQLiteInterrupted(t *testing.T) {
	cfg := rebuildLedger(t)
	want := ledgerState(t, cfg)
	defer store.SetRebuildHooks(time.Millisecond, nil, func(step string) { t.Errorf("an interrupted rebuild reached step %s", step) })()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var partial int64
	_, err := store.RebuildSQLite(ctx, cfg, 4096, func(p store.RebuildProgress) {
		if p.Phase == store.RebuildCopy && p.Bytes > 0 && partial == 0 {
			partial = p.Bytes
			cancel()
		}
	})
	if e := wantCode(t, err, tacerr.Unavailable); partial == 0 || !strings.Contains(e.Message, "interrupted; the ledger "+cfg.DSN+" is as it was") {
		t.Fatalf("rebuild cancelled during the copy (at %d bytes): %v", partial, err)
	}
	if left := rebuildFiles(t, cfg.DSN); len(left) > 0 {
		t.Fatalf("an interrupted rebuild left %v", left)
	}
	if got := ledgerState(t, cfg); got != want {
		t.Fatalf("after an interrupted rebuild: %s; before: %s", got, want)
	}
}

// TestRebuildSQLiteRefusedCopy: a rebuilt copy that fails the ledger check
// does not replace the ledger (ledger_invariant, the file unchanged, the
// copy removed), and the refusal says which side is at fault: a ledger
// that was already inconsistent (its copy holds the same rows) is named
// as the ledger at fault, with what to do; a copy that fails while the
// ledger passes (broken after the copy, a fault a real copy cannot be
// made to have) is named as the copy. The refusal blamed "the rebuilt
// copy" in both cases.
func TestRebuildSQLiteRefusedCopy(t *testing.T) {
	t.Run("the ledger", func(t *testing.T) {
		cfg := rebuildLedger(t)
		// SNRs below the high-water mark without a row.
		fileExec(t, cfg.DSN, "UPDATE pools SET next_snr = next_snr + 5", "PRAGMA wal_checkpoint(TRUNCATE)")
		before := fileHash(t, cfg.DSN)
		rep, err := store.RebuildSQLite(context.Background(), cfg, 4096, nil)
		e := wantCode(t, err, tacerr.LedgerInvariant)
		if rep.Replaced || rep.Check.OK() || rep.Failed != store.RebuildFailedLedger || rep.SourceCheck == nil || rep.SourceCheck.OK() {
			t.Fatalf("rebuild of a broken ledger: %+v", rep)
		}
		if e.Field != "database.dsn" || !strings.Contains(e.Message, "the ledger "+cfg.DSN+" itself fails the ledger check") ||
			!strings.Contains(e.Message, "restore") || strings.HasPrefix(e.Message, "the rebuilt copy") {
			t.Fatalf("the refusal of a broken ledger does not blame the ledger: %v", err)
		}
		if fileHash(t, cfg.DSN) != before || len(rebuildFiles(t, cfg.DSN)) > 0 {
			t.Fatalf("a refused copy changed the ledger or left %v", rebuildFiles(t, cfg.DSN))
		}
	})
	t.Run("the copy", func(t *testing.T) {
		cfg := rebuildLedger(t)
		before := fileHash(t, cfg.DSN)
		defer store.SetRebuildHooks(0, nil, func(step string) {
			if step == "copied" {
				fileExec(t, cfg.DSN+store.RebuildSuffix, "UPDATE pools SET next_snr = next_snr + 5")
			}
		})()
		rep, err := store.RebuildSQLite(context.Background(), cfg, 4096, nil)
		e := wantCode(t, err, tacerr.LedgerInvariant)
		if rep.Replaced || rep.Check.OK() || rep.Failed != store.RebuildFailedCopy || rep.SourceCheck == nil || !rep.SourceCheck.OK() {
			t.Fatalf("rebuild with a broken copy: %+v", rep)
		}
		if !strings.Contains(e.Message, "the rebuilt copy fails the ledger check") || !strings.Contains(e.Message, "while the ledger "+cfg.DSN+" passes it") {
			t.Fatalf("the refusal of a broken copy: %v", err)
		}
		if fileHash(t, cfg.DSN) != before || len(rebuildFiles(t, cfg.DSN)) > 0 {
			t.Fatalf("a refused copy changed the ledger or left %v", rebuildFiles(t, cfg.DSN))
		}
	})
}

// TestRebuildSQLiteDamagedLedger: a ledger whose file is damaged (an
// index that lost its entries, which PRAGMA integrity_check finds) is
// refused before anything is written, naming the ledger and what to do
// (ledger_invariant, failed "ledger"); the ledger is as it was. The
// rebuild used to copy it without a look: VACUUM INTO rebuilds indexes
// from the tables, so the copy passed the ledger check and replaced the
// ledger, and the damage went unnoticed.
func TestRebuildSQLiteDamagedLedger(t *testing.T) {
	cfg := rebuildLedger(t)
	// A table and index of the test's own; the index's root page (a leaf)
	// then says it holds no entry.
	fileExec(t, cfg.DSN, "CREATE TABLE damaged(x INTEGER)",
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 20) INSERT INTO damaged SELECT i FROM n",
		"CREATE INDEX damaged_x ON damaged(x)", "PRAGMA wal_checkpoint(TRUNCATE)")
	h, err := sql.Open("sqlite3", cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	err = h.QueryRow("SELECT rootpage FROM sqlite_schema WHERE name = 'damaged_x'").Scan(&root)
	if err == nil {
		err = h.QueryRow("PRAGMA page_size").Scan(&pageSize)
	}
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(cfg.DSN, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 5)
	if _, err := f.ReadAt(page, (root-1)*pageSize); err != nil || page[0] != 0x0a {
		t.Fatalf("index root page %d: %x, %v; want a leaf index page (0x0a)", root, page, err)
	}
	if _, err := f.WriteAt([]byte{0, 0}, (root-1)*pageSize+3); err != nil { // cell count 0
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, cfg.DSN)
	var phases []store.RebuildPhase
	rep, err := store.RebuildSQLite(context.Background(), cfg, 4096, func(p store.RebuildProgress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
	})
	e := wantCode(t, err, tacerr.LedgerInvariant)
	if rep.Replaced || rep.Failed != store.RebuildFailedLedger || len(rep.Integrity) == 0 || !strings.Contains(strings.Join(rep.Integrity, " "), "damaged_x") {
		t.Fatalf("rebuild of a damaged ledger: %+v", rep)
	}
	if e.Field != "database.dsn" || !strings.Contains(e.Message, "the ledger "+cfg.DSN+" itself is damaged") || !strings.Contains(e.Message, "integrity_check") ||
		!strings.Contains(e.Message, "tacline restore") {
		t.Fatalf("the refusal of a damaged ledger: %v", err)
	}
	if len(phases) != 1 || phases[0] != store.RebuildVerify {
		t.Fatalf("phases %v, want only %s: nothing copied", phases, store.RebuildVerify)
	}
	if fileHash(t, cfg.DSN) != before || len(rebuildFiles(t, cfg.DSN)) > 0 {
		t.Fatalf("a refused rebuild changed the ledger or left %v", rebuildFiles(t, cfg.DSN))
	}
}

// TestRebuildSQLiteKilled: a rebuild process killed (SIGKILL) during the
// copy, after the check or after the rename leaves a ledger that opens and
// passes the check with every row: the old one (with a partial
// ledger.db-rebuild, which the next rebuild removes), or the new one. The
// child is this test binary, running TestRebuildChild.
func TestRebuildSQLiteKilled(t *testing.T) {
	for _, at := range []string{"copying", "checked", "renamed"} {
		t.Run(at, func(t *testing.T) {
			cfg := rebuildLedger(t)
			want := ledgerState(t, cfg)
			cmd := exec.Command(os.Args[0], "-test.run=^TestRebuildChild$", "-test.v")
			cmd.Env = append(os.Environ(), "TACLINE_REBUILD_CHILD="+cfg.DSN, "TACLINE_REBUILD_KILL_AT="+at)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v\n%s", err, out)
			}
			left := rebuildFiles(t, cfg.DSN)
			if at == "renamed" {
				if got, want := ledgerState(t, cfg), strings.Replace(want, "page size 1024", "page size 4096", 1); got != want {
					t.Fatalf("killed after the rename: %s; want %s", got, want)
				}
				return
			}
			if len(left) == 0 {
				t.Fatalf("killed at %s: no partial copy left", at)
			}
			if got := ledgerState(t, cfg); got != want {
				t.Fatalf("killed at %s: %s; before: %s", at, got, want)
			}
			rep, err := store.RebuildSQLite(context.Background(), cfg, 4096, nil)
			if err != nil || rep.StaleBytes == 0 || !rep.Replaced {
				t.Fatalf("the rebuild after one killed at %s: %+v, %v", at, rep, err)
			}
			if left := rebuildFiles(t, cfg.DSN); len(left) > 0 {
				t.Fatalf("the rebuild after one killed at %s left %v", at, left)
			}
		})
	}
}

// TestRebuildChild is TestRebuildSQLiteKilled's child process: it rebuilds
// the ledger named by TACLINE_REBUILD_CHILD to 4 KiB pages and kills
// itself at TACLINE_REBUILD_KILL_AT ("copying": once the new file has
// pages and the copy is not done).
func TestRebuildChild(t *testing.T) {
	path, at := os.Getenv("TACLINE_REBUILD_CHILD"), os.Getenv("TACLINE_REBUILD_KILL_AT")
	if path == "" {
		t.Skip("the child of TestRebuildSQLiteKilled")
	}
	kill := func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL); select {} }
	defer store.SetRebuildHooks(time.Millisecond, nil, func(step string) {
		if step == at {
			kill()
		}
	})()
	_, err := store.RebuildSQLite(context.Background(), store.Config{Driver: store.SQLite, DSN: path}, 4096, func(p store.RebuildProgress) {
		if at == "copying" && p.Phase == store.RebuildCopy && p.Bytes > 0 && p.Bytes < p.TotalBytes {
			kill()
		}
	})
	t.Fatalf("the rebuild ended (%v) before it reached %s", err, at)
}

// TestRebuildSQLiteOldFileMarked: a process that opened the ledger before
// the rebuild renamed the new file over it (a server started during the
// rebuild, waiting for the lock) finds no ledger in the old file once the
// lock is let go: its header no longer starts with SQLite's magic string,
// so SQLite answers "file is not a database" instead of the process
// writing to a file no longer in the directory.
func TestRebuildSQLiteOldFileMarked(t *testing.T) {
	cfg := rebuildLedger(t)
	f, err := os.Open(cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	magic := []byte("SQLite format 3\x00")
	head := make([]byte, len(magic))
	if _, err := f.ReadAt(head, 0); err != nil || string(head) != string(magic) {
		t.Fatalf("the ledger's header before: %q, %v", head, err)
	}
	if rep, err := store.RebuildSQLite(context.Background(), cfg, 4096, nil); err != nil || !rep.Replaced {
		t.Fatalf("rebuild: %+v, %v", rep, err)
	}
	st, err := f.Stat()
	if err != nil || st.Sys().(*syscall.Stat_t).Nlink != 0 {
		t.Fatalf("the old file after the rebuild: %+v, %v; want it out of the directory", st, err)
	}
	if _, err := f.ReadAt(head, 0); err != nil || string(head) == string(magic) {
		t.Fatalf("the old file's header after the rebuild: %q, %v; want no SQLite magic", head, err)
	}
	if got := ledgerState(t, cfg); !strings.HasPrefix(got, "page size 4096") {
		t.Fatalf("the ledger after the rebuild: %s", got)
	}
}

// TestRebuildSQLiteThroughSymlink: a ledger path that is a symbolic link
// is followed, as SQLite follows it: the new file is written next to the
// file itself and renamed over it, and the link stays a link.
func TestRebuildSQLiteThroughSymlink(t *testing.T) {
	cfg := rebuildLedger(t)
	link := filepath.Join(t.TempDir(), "ledger.db")
	if err := os.Symlink(cfg.DSN, link); err != nil {
		t.Fatal(err)
	}
	rep, err := store.RebuildSQLite(context.Background(), store.Config{Driver: store.SQLite, DSN: link}, 4096, nil)
	if err != nil || !rep.Replaced {
		t.Fatalf("rebuild through a link: %+v, %v", rep, err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link after the rebuild: %v, %v", st, err)
	}
	if got := ledgerState(t, cfg); !strings.HasPrefix(got, "page size 4096") {
		t.Fatalf("the ledger after a rebuild through a link: %s", got)
	}
	if left := append(rebuildFiles(t, cfg.DSN), rebuildFiles(t, link)...); len(left) > 0 {
		t.Fatalf("left %v", left)
	}
}

// TestRebuildSQLiteDiskFull: a rebuild whose filesystem fills up during
// the copy (the ledger on a real 12 MiB tmpfs with room for less than the
// 9 MiB copy, the free space it measured said to be ample: something else
// took it after) fails with insufficient_space, removes the partial copy
// and leaves the ledger byte for byte as it was. The rebuild runs in
// TestRebuildDiskFullChild.
func TestRebuildSQLiteDiskFull(t *testing.T) {
	cfg := rebuildLedger(t)
	fileExec(t, cfg.DSN, "PRAGMA wal_checkpoint(TRUNCATE)")
	storetest.SmallFS(t, "TestRebuildDiskFullChild", 12<<20, "TACLINE_REBUILD_LEDGER="+cfg.DSN)
}

// TestRebuildDiskFullChild is TestRebuildSQLiteDiskFull's child: it copies
// the ledger into its small filesystem and rebuilds it there.
func TestRebuildDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	b, err := os.ReadFile(os.Getenv("TACLINE_REBUILD_LEDGER"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := store.Config{Driver: store.SQLite, DSN: filepath.Join(dir, "ledger.db")}
	if err := os.WriteFile(cfg.DSN, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := fileHash(t, cfg.DSN)
	defer store.SetRebuildHooks(0, func(string) (int64, error) { return 1 << 40, nil }, func(step string) {
		t.Errorf("a rebuild that filled its disk reached step %s", step)
	})()
	rep, err := store.RebuildSQLite(context.Background(), cfg, 1024, nil)
	e := wantCode(t, err, tacerr.InsufficientSpace)
	if rep.Replaced || !strings.Contains(e.Message, "filled up during the ledger rebuild's copy") || !strings.Contains(err.Error(), "database or disk is full") {
		t.Fatalf("rebuild on a full filesystem: %+v, %v", rep, err)
	}
	if fileHash(t, cfg.DSN) != before || len(rebuildFiles(t, cfg.DSN)) > 0 {
		t.Fatalf("a rebuild that filled its disk changed the ledger or left %v", rebuildFiles(t, cfg.DSN))
	}
}
