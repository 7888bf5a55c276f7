package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// checkFinds runs the ledger check and wants its first violation to name want.
func checkFinds(t *testing.T, db *store.DB, want string) {
	t.Helper()
	rep, err := db.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !strings.Contains(rep.Violations[0], want) {
		t.Fatalf("violations = %v, want one naming %q", rep.Violations, want)
	}
}

// TestCheckWalksPoolRanges: the check walks each pool's allocated range on
// the primary key (no pool_id index since migration 11) and still finds a row
// outside its pool's range and a row recorded in the wrong pool.
func TestCheckWalksPoolRanges(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		if _, err := reserve(db, "a", "A", 2); err != nil {
			t.Fatal(err)
		}
		if rep := mustCheck(t, db); rep.IMEIs != 2 {
			t.Fatalf("IMEIs = %d, want 2", rep.IMEIs)
		}
		// A row above the high-water mark, as a writer that forgot the pool would leave.
		stray := int64(testTAC)*1_000_000 + 50
		if err := rawExec(db, fmt.Sprintf(`INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reserved_at)
			SELECT %d, pool_id, reservation_id, grp, 1, state, reserved_at FROM imeis WHERE imei14 = %d`, stray, int64(testTAC)*1_000_000)); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "lies outside the pool's allocated range 000000-000001")
		if err := rawExec(db, `UPDATE pools SET next_snr = 51 WHERE name = 'A'`); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "SNR 000002 has no ledger row")
	})
}

// TestCheckForeignRowInRange: a row inside one pool's range that the ledger
// records under another pool is named.
func TestCheckForeignRowInRange(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		ctx := context.Background()
		if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 200, SNREnd: 299, Factory: "F1", Line: "L1", Product: "EX-1", Market: "DE"}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "a", "A", 2); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, db)
		if err := rawExec(db, fmt.Sprintf(`UPDATE imeis SET pool_id = (SELECT id FROM pools WHERE name = 'B') WHERE imei14 = %d`, int64(testTAC)*1_000_000+1)); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "is recorded in pool B")
	})
}

// TestCheckReservationRowCount: a reservation whose IMEI rows are not
// devices*per_device is named, one with no row at all included (the check
// counts the rows' reservation ids, which the reservation index holds).
func TestCheckReservationRowCount(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		if _, err := reserve(db, "a", "A", 2); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, db)
		if err := rawExec(db, `INSERT INTO reservations (request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, created_at)
			SELECT 'empty', request_hash, pool_id, caller, kind, 'dev-empty', 1, 1, created_at FROM reservations WHERE request_id = 'a'`); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "reservation empty holds 0 IMEIs, not devices*per_device")
	})
}

// TestDropIMEIsPoolUpgrade: migration 11 drops imeis_pool on a ledger with
// rows, its down step restores it, and the check passes either way.
func TestDropIMEIsPoolUpgrade(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		t.Parallel()
		ctx := context.Background()
		db := storetest.Open(t, d)
		seed(t, db, 0, 99)
		if _, err := reserve(db, "a", "A", 2); err != nil {
			t.Fatal(err)
		}
		q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'imeis_pool'`
		if d == store.Postgres {
			q = `SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'imeis_pool'`
		}
		indexes := func() int {
			var n int
			if err := storetest.Reader(db).QueryRowContext(ctx, q).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if n := indexes(); n != 0 {
			t.Fatalf("imeis_pool indexes after migrating = %d, want 0", n)
		}
		if err := db.MigrateDownTo(ctx, 10); err != nil {
			t.Fatal(err)
		}
		if n := indexes(); n != 1 {
			t.Fatalf("imeis_pool indexes at schema 10 = %d, want 1", n)
		}
		// (No check at schema 10: Check reads the lease columns of 0013.)
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if n := indexes(); n != 0 {
			t.Fatalf("imeis_pool indexes after the upgrade = %d, want 0", n)
		}
		if rep := mustCheck(t, db); rep.IMEIs != 2 {
			t.Fatalf("IMEIs = %d, want 2", rep.IMEIs)
		}
	})
}

// TestCheckRowMovedOutOfRange: a pool whose row count is right but one of
// whose rows lies outside its allocated range (the check counts each
// pool's rows in one pass and walks the ranges only when something does
// not add up) is named: the SNR without its row.
func TestCheckRowMovedOutOfRange(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		if _, err := reserve(db, "a", "A", 2); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, db)
		base := int64(testTAC) * 1_000_000
		if err := rawExec(db, fmt.Sprintf(`UPDATE imeis SET imei14 = %d WHERE imei14 = %d`, base+50, base+1)); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "pool A: SNR 000001 has no ledger row")
	})
}
