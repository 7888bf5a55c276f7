package store_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestSQLiteIMEIRowsAppend: on SQLite the IMEI rows are written where the
// table ends (migration 0015), in commit order whatever their pool, so a
// batch's rows and their rewrite at bind share the table's last pages
// instead of one page in the middle per pool; the IMEI stays unique (a
// second row for it is a conflict) and an integer. certificates has no
// index by device serial (no reader used it). Migrating down to 14 (the
// IMEI as rowid, the index back) and up again keeps every row and what a
// lookup reads. It holds on a new ledger (1 KiB pages) and on one created
// with 4 KiB pages before session 5.
func TestSQLiteIMEIRowsAppend(t *testing.T) {
	for _, page := range []int{1024, 4096} {
		t.Run(fmt.Sprint(page), func(t *testing.T) {
			t.Parallel()
			cfg := storetest.Config(t, store.SQLite)
			if page != 1024 {
				old, err := sql.Open("sqlite3", cfg.DSN)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := old.Exec(fmt.Sprintf(`PRAGMA page_size = %d; PRAGMA journal_mode = WAL; CREATE TABLE before_us (x INTEGER)`, page)); err != nil {
					t.Fatal(err)
				}
				old.Close()
			}
			db, err := store.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var got int
			if err := storetest.Reader(db).Get(&got, `PRAGMA page_size`); err != nil || got != page {
				t.Fatalf("page_size %d (%v), want %d", got, err, page)
			}
			testIMEIRowsAppend(t, db)
		})
	}
}

func testIMEIRowsAppend(t *testing.T, db *store.DB) {
	ctx := context.Background()
	seed(t, db, 500000, 599999) // pool A: high SNRs
	if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 0, SNREnd: 99999, Factory: "F1", Line: "L1",
		Product: "EX-1", Market: "DE"}, "test"); err != nil {
		t.Fatal(err)
	}
	var order []imei.IMEI // first IMEI of each reservation, in commit order
	for i, pool := range []string{"A", "B", "A", "B"} {
		req := provisionRequest("ap" + string(rune('0'+i)))
		req.Pool = pool
		r, err := db.Reserve(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, r.Devices[0][0])
		if i == 0 {
			if err := db.CommitBinding(ctx, bindingOf(r, req)); err != nil {
				t.Fatal(err)
			}
		}
	}
	rowids := func() []int64 {
		t.Helper()
		out := make([]int64, len(order))
		for i, m := range order {
			if err := storetest.Reader(db).QueryRowContext(ctx, `SELECT rowid FROM imeis WHERE imei14 = ?`, int64(m.Uint64())).Scan(&out[i]); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	got := rowids()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("rowids of the reservations' first IMEIs in commit order = %v: not appended", got)
		}
	}

	// The IMEI is still unique and an integer.
	err := db.Commit(ctx, func(tx *store.Tx) error {
		_, err := storetest.Exec(tx, `INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reserved_at)
			SELECT imei14, pool_id, reservation_id, grp, 2, 'RESERVED', reserved_at FROM imeis WHERE imei14 = ?`, int64(order[1].Uint64()))
		return store.Translate(err, "insert a second row for an IMEI")
	})
	wantCode(t, err, tacerr.Conflict)
	err = db.Commit(ctx, func(tx *store.Tx) error {
		_, err := storetest.Exec(tx, `INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reserved_at)
			SELECT 'x' || imei14, pool_id, reservation_id, grp, 2, 'RESERVED', reserved_at FROM imeis WHERE imei14 = ?`, int64(order[1].Uint64()))
		return err
	})
	if err == nil {
		t.Fatal("a text IMEI was recorded")
	}

	before := make([]store.IMEIRecord, len(order))
	for i, m := range order {
		if before[i], err = db.LookupIMEI(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if before[0].State != store.StateBound || before[1].State != store.StateReserved {
		t.Fatalf("states %s, %s", before[0].State, before[1].State)
	}
	certIndexes := func() string {
		t.Helper()
		var names string
		if err := storetest.Reader(db).QueryRowContext(ctx, `SELECT COALESCE(group_concat(name, ','), '') FROM sqlite_schema
			WHERE type = 'index' AND tbl_name = 'certificates' AND sql IS NOT NULL`).Scan(&names); err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := certIndexes(); got != "certificates_revoked" {
		t.Fatalf("indexes of certificates: %s", got)
	}
	if err := db.MigrateDownTo(ctx, 14); err != nil {
		t.Fatal(err)
	}
	if got := certIndexes(); !strings.Contains(got, "certificates_device") {
		t.Fatalf("schema 14: indexes of certificates: %s", got)
	}
	for i, id := range rowids() {
		if id != int64(order[i].Uint64()) {
			t.Fatalf("schema 14: rowid %d of IMEI %s is not the IMEI", id, order[i])
		}
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for i, m := range order {
		after, err := db.LookupIMEI(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if after != before[i] {
			t.Fatalf("IMEI %s after migrating down and up: %+v, was %+v", m, after, before[i])
		}
	}
	// New rows still append after the copied ones.
	last := rowids()[len(order)-1]
	r, err := db.Reserve(ctx, provisionRequest("ap9"))
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := storetest.Reader(db).QueryRowContext(ctx, `SELECT rowid FROM imeis WHERE imei14 = ?`, int64(r.Devices[0][0].Uint64())).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if id <= last {
		t.Fatalf("rowid %d of a new IMEI after the upgrade is not after %d", id, last)
	}
	mustCheck(t, db)
}
