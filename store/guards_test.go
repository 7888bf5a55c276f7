package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestLedgerGuards: the database itself refuses what no tacline code may
// do to the ledger's rows: a pool's range changed or its high-water mark
// moved down, an IMEI deleted or moved back to an earlier state; and it
// lets through the changes tacline makes (on PostgreSQL the guards decide
// in their triggers' WHEN clauses, migration 0016). Each refusal is checked
// with the row unchanged afterwards.
func TestLedgerGuards(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		r, err := reserve(db, "a", "A", 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			`UPDATE pools SET next_snr = next_snr - 1 WHERE name = 'A'`,
			`UPDATE pools SET snr_end = snr_end - 1 WHERE name = 'A'`,
			`UPDATE pools SET snr_start = snr_start + 1 WHERE name = 'A'`,
			`UPDATE imeis SET state = 'REVOKED' WHERE state = 'RESERVED'`,
			`UPDATE imeis SET state = 'RESERVED' WHERE state = 'RESERVED'`, // allowed
			`DELETE FROM imeis`,
		} {
			err := rawExec(db, q)
			allowed := !strings.Contains(q, "DELETE") && strings.Contains(q, "'RESERVED' WHERE")
			if allowed != (err == nil) {
				t.Errorf("%s: error %v, allowed %v", q, err, allowed)
			}
		}
		p, err := db.Pool(ctx, "A")
		if err != nil {
			t.Fatal(err)
		}
		if p.NextSNR != 2 || p.SNRStart != 0 || p.SNREnd != 99 {
			t.Fatalf("pool after refused updates: %+v", p)
		}
		rec, err := db.LookupIMEI(ctx, r.Devices[0][0])
		if err != nil || rec.State != store.StateReserved {
			t.Fatalf("IMEI after refused updates: %+v, %v", rec, err)
		}
		// What tacline does passes: the high-water mark moves up, the
		// IMEIs are bound.
		if err := rawExec(db, `UPDATE pools SET next_snr = next_snr + 1 WHERE name = 'A'`); err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.Bind(r.Devices[0], "dev-a", "c0ffee", "S1", "a") }); err != nil {
			t.Fatal(err)
		}
	})
}
