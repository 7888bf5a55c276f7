package store

import (
	"testing"

	"github.com/jmoiron/sqlx"
)

// TestRebindDollarKept: PostgreSQL's form of a statement is sqlx's, built
// once and then read back without allocating.
func TestRebindDollarKept(t *testing.T) {
	q := "SELECT a FROM t WHERE b = ? AND c IN (?, ?) AND d = '?'"
	if got, want := rebindDollar(q), sqlx.Rebind(sqlx.DOLLAR, q); got != want {
		t.Fatalf("rebindDollar = %q, want sqlx's %q", got, want)
	}
	if n := testing.AllocsPerRun(50, func() { _ = rebindDollar(q) }); n != 0 {
		t.Fatalf("%v allocations per rebind of a known statement, want 0", n)
	}
}

// TestRowWriterSized: a writer sized for its rows collects them without
// regrowing its arguments.
func TestRowWriterSized(t *testing.T) {
	const rows = 200
	if n := testing.AllocsPerRun(20, func() {
		w := (&rowWriter{cols: 2, what: "test"}).sized(rows)
		for range rows {
			if err := w.add(1, 2); err != nil {
				t.Fatal(err)
			}
		}
	}); n > 2 {
		t.Fatalf("%v allocations for %d rows, want at most 2 (the writer and its one slice)", n, rows)
	}
}
