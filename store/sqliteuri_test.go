package store_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tacline/tacline/store"
)

// TestSQLitePathWithURICharacters: a ledger whose path holds characters
// that SQLite's URI filenames treat specially ('#' ends the path, %HH is
// decoded) is opened at that path and nowhere else, and reopened there.
func TestSQLitePathWithURICharacters(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	dir := filepath.Join(parent, "line#2 100%41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := store.Config{Driver: store.SQLite, DSN: filepath.Join(dir, "ledger.db")}
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.EnrollStation(ctx, store.StationRecord{ID: "S-1"}, "test"); err != nil {
		db.Close()
		t.Fatal(err)
	}
	db.Close()
	if fi, err := os.Stat(cfg.DSN); err != nil || fi.Size() == 0 {
		t.Fatalf("the ledger is not at %s: %v", cfg.DSN, err)
	}
	if names := dirNames(t, parent); !slices.Equal(names, []string{"line#2 100%41"}) {
		t.Fatalf("files next to the ledger's directory: %q (SQLite cut or decoded the path)", names)
	}
	if n, err := store.Size(ctx, cfg); err != nil || n == 0 {
		t.Fatalf("Size = %d, %v", n, err)
	}
	db, err = store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Station(ctx, "S-1"); err != nil {
		t.Fatalf("the reopened ledger lost its station: %v", err)
	}
}
