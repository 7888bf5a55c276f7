package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"testing"

	"github.com/jmoiron/sqlx"
)

// randomKeyTable opens a ledger in a new directory and gives its writer
// and a function that inserts rows of random 48-character keys into a
// table with a unique index on them, in one transaction it commits or
// rolls back; it returns the keys.
func randomKeyTable(tb testing.TB) (*sqlx.DB, func(rows int, commit bool) []string) {
	ctx := context.Background()
	db, err := Open(ctx, Config{Driver: SQLite, DSN: filepath.Join(tb.TempDir(), "ledger.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	w := db.w
	if _, err := w.ExecContext(ctx, `CREATE TABLE pc_t (k TEXT NOT NULL); CREATE UNIQUE INDEX pc_k ON pc_t (k)`); err != nil {
		tb.Fatal(err)
	}
	return w, func(rows int, commit bool) []string {
		tb.Helper()
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			tb.Fatal(err)
		}
		keys := make([]string, rows)
		for i := range keys {
			b := make([]byte, 24)
			rand.Read(b)
			keys[i] = hex.EncodeToString(b)
			if _, err := tx.ExecContext(ctx, `INSERT INTO pc_t (k) VALUES (?)`, keys[i]); err != nil {
				tb.Fatal(err)
			}
		}
		if !commit {
			err = tx.Rollback()
		} else {
			err = tx.Commit()
		}
		if err != nil {
			tb.Fatal(err)
		}
		return keys
	}
}

// TestPageCacheTruncation runs the ledger's writer through inserts at
// random places in an index (which rebalance siblings and park a page
// under the lock-byte page's number), a rolled-back transaction that grew
// the file, and more inserts after it, then checks SQLite's integrity and
// every row. The commits' truncations must not reach pcache1 once a page
// was parked (without the wrapper's rule each of them would: the parked
// number stays pcache1's largest key), and the rollback's must.
func TestPageCacheTruncation(t *testing.T) {
	w, insert := randomKeyTable(t)
	want := map[string]bool{}
	commit := func(rows int) {
		for _, k := range insert(rows, true) {
			want[k] = true
		}
	}
	// enough rows that the index has many leaves, so that inserts land
	// between full siblings
	for i := 0; i < 40; i++ {
		commit(100)
	}
	tr0, sk0, pk0 := pageCacheStats()
	const commits = 200
	for i := 0; i < commits; i++ {
		commit(10)
	}
	tr1, sk1, pk1 := pageCacheStats()
	if pk1 == pk0 {
		t.Fatalf("no page was parked under the lock-byte page's number in %d commits of inserts at random places: the test no longer exercises the case", commits)
	}
	if tr1-tr0 < commits {
		t.Fatalf("%d truncations in %d commits: SQLite no longer truncates the cache at each commit", tr1-tr0, commits)
	}
	if passed := (tr1 - tr0) - (sk1 - sk0); passed > commits/10 {
		t.Fatalf("%d of %d truncations reached pcache1 after %d pages were parked: the parked number still bounds the keys", passed, tr1-tr0, pk1-pk0)
	}
	// a rolled-back transaction that grew the file leaves cached pages
	// above the database's size: the truncation must drop them
	insert(3000, false)
	tr2, sk2, _ := pageCacheStats()
	if (tr2 - tr1) == (sk2 - sk1) {
		t.Fatal("the rollback's truncation did not reach pcache1")
	}
	for i := 0; i < 50; i++ {
		commit(40)
	}
	ctx := context.Background()
	var check string
	if err := w.GetContext(ctx, &check, `PRAGMA integrity_check`); err != nil {
		t.Fatal(err)
	}
	if check != "ok" {
		t.Fatalf("integrity_check: %s", check)
	}
	var got []string
	if err := w.SelectContext(ctx, &got, `SELECT k FROM pc_t ORDER BY k`); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for _, k := range got {
		if !want[k] {
			t.Fatalf("row %s was never committed", k)
		}
	}
}

// BenchmarkWriterCommit: small commits of the ledger's writer (ten
// inserts at random places in an index, as provisioning's random-key
// indexes take them) with about 20 MiB of pages in its cache, with the
// wrapper's rule (wrapped) and with every truncation handed to pcache1
// (pcache1), alternating in one process:
//
//	go test ./store -run XXX -bench BenchmarkWriterCommit -count 6
func BenchmarkWriterCommit(b *testing.B) {
	_, insert := randomKeyTable(b)
	for i := 0; i < 100; i++ {
		insert(1000, true)
	}
	for _, mode := range []struct {
		name        string
		passthrough bool
	}{{"wrapped", false}, {"pcache1", true}} {
		b.Run(mode.name, func(b *testing.B) {
			setPageCachePassthrough(mode.passthrough)
			defer setPageCachePassthrough(false)
			for i := 0; i < b.N; i++ {
				insert(10, true)
			}
		})
	}
}
