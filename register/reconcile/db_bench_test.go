package reconcile

import (
	"context"
	"testing"

	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// Bulk ledger rows for the database benchmark: SNR 1..n of TAC tac, bound,
// under the pool and reservation of the seeded row SNR 0.
const (
	sqlBulkSQLite = `INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reserved_at)
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?)
SELECT ? * 1000000 + n, i.pool_id, i.reservation_id, 0, 0, 'BOUND', 0 FROM s, imeis i WHERE i.imei14 = ? * 1000000`
	sqlBulkPostgres = `INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reserved_at)
SELECT $2::bigint * 1000000 + n, i.pool_id, i.reservation_id, 0, 0, 'BOUND', 0
FROM generate_series(1, $1::bigint) AS n, imeis i WHERE i.imei14 = $3::bigint * 1000000`
)

// BenchmarkDBLedgerLoad measures reading 999,999 ledger rows from the
// database into the index (the DBLedger path of tacline reconcile).
func BenchmarkDBLedgerLoad(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			registertest.Seed(b, db, tac, []registertest.Row{{SNR: 0, State: "BOUND", Device: "D0"}})
			q := sqlBulkSQLite
			if d == store.Postgres {
				q = sqlBulkPostgres
			}
			err := db.InTx(context.Background(), func(tx *store.Tx) error {
				_, err := storetest.Exec(tx, q, 999_999, tac, tac)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				x := NewIndex()
				if err := (DBLedger{DB: db}).Load(context.Background(), x); err != nil {
					b.Fatal(err)
				}
				if x.ledger != 1_000_000 {
					b.Fatalf("loaded %d rows", x.ledger)
				}
			}
			b.ReportMetric(float64(1_000_000*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
