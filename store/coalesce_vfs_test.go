package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/tacline/tacline/store"
)

// integrity opens path with SQLite's default VFS (as the readers and the
// sqlite3 tool do) and runs PRAGMA integrity_check.
func integrity(t *testing.T, path string) {
	t.Helper()
	c, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var s string
	if err := c.QueryRow("PRAGMA integrity_check").Scan(&s); err != nil || s != "ok" {
		t.Fatalf("integrity_check of %s: %q, %v", path, s, err)
	}
}

// The ledger's writer goes through the coalescing VFS: concurrent
// reservations (group-committed) write fewer, larger writes than SQLite
// asked for, every reservation is there, the file is sound while the
// writer is open (read with the default VFS) and after a checkpoint and a
// close, and the ledger check passes.
func TestCoalescingVFSKeepsTheLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	db, err := store.Open(context.Background(), store.Config{Driver: store.SQLite, DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, db, 0, 99999)
	w0, f0, _ := store.CoalesceStats()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := reserve(db, fmt.Sprintf("vfs-%d-%d", g, i), "A", 2); err != nil {
					errs <- err
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	w1, f1, _ := store.CoalesceStats()
	if w1-w0 == 0 || f1-f0 >= w1-w0 {
		t.Fatalf("VFS: %d writes asked for, %d made: no coalescing", w1-w0, f1-f0)
	}
	integrity(t, path) // WAL not checkpointed yet: read through the wal-index
	rep := mustCheck(t, db)
	if rep.IMEIs != 800 {
		t.Fatalf("ledger check counted %d IMEIs, want 800", rep.IMEIs)
	}
	if err := db.Close(); err != nil { // checkpoints the WAL into the database file
		t.Fatal(err)
	}
	integrity(t, path)
	db, err = store.Open(context.Background(), store.Config{Driver: store.SQLite, DSN: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustCheck(t, db)
}

// The VFS on its own, where SQLite's page cache is too small for a
// transaction (it spills frames into the WAL before the commit and reads
// them back, from the region the VFS is still gathering; it writes frames
// of pages changed again over their first frames and rewrites their
// checksums at the commit) and with synchronous=OFF (no xSync: the frames
// must reach the file when the commit frame is written, before another
// connection, with the default VFS, reads them through the wal-index, and
// before a crash could lose them: a copy of the files must recover every
// committed row).
func TestCoalescingVFSSpillAndNoSync(t *testing.T) {
	for _, sync := range []string{"FULL", "OFF"} {
		t.Run(sync, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spill.db")
			w, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_synchronous="+sync+"&_cache_size=5&vfs="+store.CoalesceVFS)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.SetMaxOpenConns(1)
			r, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := w.Exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB, n INTEGER NOT NULL DEFAULT 0)"); err != nil {
				t.Fatal(err)
			}
			for round := 1; round <= 3; round++ {
				tx, err := w.Begin()
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 500; i++ {
					k := round*1000 + i
					if _, err := tx.Exec("INSERT INTO t (k, v) VALUES (?, ?)", k, bytes.Repeat([]byte{byte(k)}, 1000)); err != nil {
						t.Fatal(err)
					}
				}
				// Change every row again: pages spilled to the WAL in this
				// transaction are changed and spilled again, which SQLite writes
				// over their frames and, at the commit, rewrites the frames'
				// checksums (the commit frame's header written a second time).
				if _, err := tx.Exec("UPDATE t SET n = n + 1 WHERE k >= ?", round*1000); err != nil {
					t.Fatal(err)
				}
				// Read every row back inside the transaction: most pages were
				// spilled to the WAL by the 5-page cache.
				var n, sum int64
				if err := tx.QueryRow("SELECT COUNT(*), SUM(length(v) + n) FROM t WHERE k >= ?", round*1000).Scan(&n, &sum); err != nil || n != 500 || sum != 500500 {
					t.Fatalf("round %d inside the transaction: %d rows, %d bytes, %v", round, n, sum, err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				var rows int64
				var last []byte
				if err := r.QueryRow("SELECT COUNT(*), (SELECT v FROM t ORDER BY k DESC LIMIT 1) FROM t").Scan(&rows, &last); err != nil || rows != int64(500*round) {
					t.Fatalf("round %d, other connection: %d rows, %v", round, rows, err)
				}
				if want := bytes.Repeat([]byte{byte(round*1000 + 499)}, 1000); !bytes.Equal(last, want) {
					t.Fatalf("round %d, other connection: last row differs", round)
				}
				// What the files hold now is what a crash of the process would
				// leave: a copy, recovered from its WAL (frame checksums
				// checked), holds every committed row.
				if got := recoveredRows(t, path); got != int64(500*round) {
					t.Fatalf("round %d: a copy of the files recovers %d rows, want %d", round, got, 500*round)
				}
			}
			if _, err := w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
				t.Fatal(err)
			}
			integrity(t, path)
		})
	}
}

// recoveredRows copies the database file and its WAL (not the wal-index)
// and counts the rows of table t in the copy, which SQLite recovers from
// the WAL as after a crash.
func recoveredRows(t *testing.T, path string) int64 {
	t.Helper()
	dir := t.TempDir()
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "copy.db"+suffix), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int64
	if err := c.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
