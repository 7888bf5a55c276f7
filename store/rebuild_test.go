package store_test

import (
	"context"
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
		rep, err := store.RebuildSQLite(ctx, cfg, size, func(time.Duration) {})
		if err != nil || rep.PageSize != size || !rep.Check.OK() || rep.Check.IMEIs != 2*22 {
			t.Fatalf("rebuild to %d: %+v, %v", size, rep, err)
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
