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

// TestUnnestFormKept: the unnest form of a multi-row INSERT is the same
// text whether built or kept, differs with its columns' types, and a kept
// one costs only the arrays (each column's slice and its boxing into the
// list, and the list).
func TestUnnestFormKept(t *testing.T) {
	head, tuple := "INSERT INTO t (a, b, c) VALUES ", "(?,'X',?)"
	const want = "INSERT INTO t (a, b, c) SELECT u.c1, 'X', u.c2 FROM unnest(?::bigint[], ?::text[]) AS u(c1, c2)"
	args := []any{int64(1), "one", int64(2), "two"}
	for i := range 2 {
		q, arrays, ok := unnestRows(head, tuple, 2, args)
		if !ok || q != want || len(arrays) != 2 {
			t.Fatalf("call %d: %q, %d arrays, %v; want %q", i+1, q, len(arrays), ok, want)
		}
		if got := arrays[1].([]string); len(got) != 2 || got[0] != "one" || got[1] != "two" {
			t.Fatalf("call %d: column 2 %v", i+1, got)
		}
	}
	q, _, ok := unnestRows(head, tuple, 2, []any{"1", "one"})
	if !ok || q != "INSERT INTO t (a, b, c) SELECT u.c1, 'X', u.c2 FROM unnest(?::text[], ?::text[]) AS u(c1, c2)" {
		t.Fatalf("other types: %q, %v", q, ok)
	}
	if _, _, ok := unnestRows(head, "(?,?,?)", 2, args); ok {
		t.Fatal("a tuple of three placeholders for two columns was accepted")
	}
	if n := testing.AllocsPerRun(50, func() { _, _, _ = unnestRows(head, tuple, 2, args) }); n > 5 {
		t.Fatalf("%v allocations per kept form, want at most 5 (two columns' slices, boxed, and their list)", n)
	}
}
