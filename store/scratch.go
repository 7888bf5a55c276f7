package store

import (
	"context"

	"github.com/tacline/tacline/tacerr"
)

// Benchmarks compare the ledger's transactions with a baseline: the same
// database committing one plain row per transaction. The scratch table
// bench_scratch is that row's home. It is not part of the ledger's schema:
// CreateScratch makes it in a throwaway ledger a benchmark created, and
// refuses a ledger that holds devices.

const (
	sqlCreateScratch = `CREATE TABLE IF NOT EXISTS bench_scratch (k1 BIGINT NOT NULL, k2 BIGINT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (k1, k2))`
	sqlWriteScratch  = `INSERT INTO bench_scratch (k1, k2, data) VALUES (?, ?, ?)`
)

// CreateScratch creates the benchmarks' scratch table in a throwaway
// ledger (one without devices).
func (db *DB) CreateScratch(ctx context.Context) error {
	return db.InTx(ctx, func(tx *Tx) error {
		var n int64
		if err := tx.get(&n, `SELECT COUNT(*) FROM devices`); err != nil {
			return translate(err, "count devices")
		}
		if n > 0 {
			return tacerr.New(tacerr.InvalidState, "this ledger holds %d devices: benchmarks' scratch rows go to a throwaway ledger only", n)
		}
		_, err := tx.exec(sqlCreateScratch)
		return translate(err, "create the benchmarks' scratch table")
	})
}

// WriteScratch writes one scratch row (k1, k2) in tx; the pair must be new.
func (tx *Tx) WriteScratch(k1, k2 int64, data string) error {
	_, err := tx.exec(tx.rebind(sqlWriteScratch), k1, k2, data)
	return translate(err, "write a scratch row")
}
