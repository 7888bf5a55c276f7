package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// The multi-row writer cuts its rows into statements below maxParams and
// writes every row once; a duplicate row fails the write through its
// handler (SQLite here; the both-database suites exercise it through the
// allocator, the audit log and the outbox).
func TestRowWriterCutsStatements(t *testing.T) {
	db, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if err := db.CreateScratch(ctx); err != nil {
		t.Fatal(err)
	}
	n := 2*(maxParams/3) + 7 // three statements; as one, over SQLite's 32766 parameters
	err = db.InTx(ctx, func(tx *Tx) error {
		w := tx.rows(`INSERT INTO bench_scratch (k1, k2, data) VALUES `, "(?,?,?)", 3, "scratch rows")
		for i := range n {
			if err := w.add(int64(i), int64(0), fmt.Sprint(i)); err != nil {
				return err
			}
		}
		return w.flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	var got int
	if err := db.r.Get(&got, `SELECT COUNT(*) FROM bench_scratch`); err != nil || got != n {
		t.Fatalf("rows written %d (%v), want %d", got, err, n)
	}
	dup := fmt.Errorf("duplicate seen")
	err = db.InTx(ctx, func(tx *Tx) error {
		w := tx.rows(`INSERT INTO bench_scratch (k1, k2, data) VALUES `, "(?,?,?)", 3, "scratch rows")
		w.onDuplicate = func(error) error { return dup }
		if err := w.add(int64(n+1), int64(0), "new"); err != nil {
			return err
		}
		if err := w.add(int64(0), int64(0), "again"); err != nil {
			return err
		}
		return w.flush()
	})
	if err != dup {
		t.Fatalf("a duplicate row: %v, want the handler's error", err)
	}
	if err := db.r.Get(&got, `SELECT COUNT(*) FROM bench_scratch`); err != nil || got != n {
		t.Fatalf("after the failed write: %d rows (%v), want %d", got, err, n)
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.rows("x", "(?)", 1, "x").add(1, 2) }); err == nil {
		t.Fatal("a row of the wrong width was accepted")
	}
}
