package store

import (
	"context"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// The console overview's caches (migrations 0020, 0021): what the overview
// read incrementally (RecentActivity, LastReservations, with the cursor
// they returned) with the time of that read, so that the first overview after a start, on any replica, goes on
// from there instead of reading the whole hour and scanning every
// reservation. The store keeps the bytes; package console owns their
// format. Provisioning never writes the table.
const (
	sqlConsoleCache     = `SELECT read_at, state FROM console_cache WHERE name = ?`
	sqlSaveConsoleCache = `INSERT INTO console_cache (name, read_at, state) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET read_at = excluded.read_at, state = excluded.state
WHERE excluded.read_at > console_cache.read_at`
)

// ConsoleCache returns the cache saved under name and the time of the read
// it describes; the zero time and no state when none was saved.
func (db *DB) ConsoleCache(ctx context.Context, name string) (time.Time, []byte, error) {
	var row struct {
		ReadAt int64  `db:"read_at"`
		State  []byte `db:"state"`
	}
	if err := db.getR(ctx, &row, db.r.Rebind(sqlConsoleCache), name); err != nil {
		if noRows(err) {
			return time.Time{}, nil, nil
		}
		return time.Time{}, nil, translate(err, "read the console's cache "+name)
	}
	return micros(row.ReadAt), row.State, nil
}

// SaveConsoleCache saves state under name as the result of a read at
// readAt, unless the saved one is as recent (replicas sharing the ledger
// each save theirs; the newest is kept).
func (db *DB) SaveConsoleCache(ctx context.Context, name string, readAt time.Time, state []byte) error {
	if name == "" {
		return tacerr.Field(tacerr.InvalidInput, "name", "must not be empty")
	}
	return db.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.exec(tx.rebind(sqlSaveConsoleCache), name, readAt.UnixMicro(), state); err != nil {
			return translate(err, "save the console's cache "+name)
		}
		return nil
	})
}
