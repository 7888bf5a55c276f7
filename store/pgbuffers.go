package store

import "context"

// A ledger's only index written at a random place by every new device is
// device_keys' primary key: the SHA-256 of the device's public key, looked
// up before the reservation (NewRequestCheck) and claimed in the batch.
// Every other index a device writes grows at its right edge (time-ordered
// serials and keys, IMEIs in pool order). On PostgreSQL, once that index
// outgrows the shared buffers, each new device reads a page of it from the
// OS cache or the disk and later writes a dirty one back: at 10^7 devices
// (733 MB) with 128 MB of shared buffers that was most of the prefilled
// ledger's extra cost (docs/benchmarks.md, "Session 20 (lead)").

// sqlBufferFit reads the shared buffers' size and the key index's size
// (0 when the ledger has no such index yet), both in bytes.
const sqlBufferFit = `SELECT
	(SELECT setting::bigint FROM pg_settings WHERE name = 'shared_buffers') *
	(SELECT setting::bigint FROM pg_settings WHERE name = 'block_size') AS shared_buffers,
	COALESCE(pg_relation_size(to_regclass('device_keys_pkey')), 0) AS key_index`

// BufferFit is the PostgreSQL server's shared buffers against the ledger's
// device-key index.
type BufferFit struct {
	SharedBuffers int64 `db:"shared_buffers"`
	KeyIndex      int64 `db:"key_index"`
}

// Short reports whether the key index takes more than half the shared
// buffers, leaving too little for the pages every batch writes at the
// other indexes' right edges: then the key index's pages are read and
// written back device by device.
func (f BufferFit) Short() bool { return f.KeyIndex > f.SharedBuffers/2 }

// BufferFit reads the shared buffers and the key index's size (PostgreSQL;
// ok is false on SQLite, whose readers map the file: store.DB.Warm).
func (db *DB) BufferFit(ctx context.Context) (fit BufferFit, ok bool, err error) {
	if db.dialect != Postgres {
		return fit, false, nil
	}
	if err := db.getR(ctx, &fit, sqlBufferFit); err != nil {
		return fit, false, translate(err, "read the shared buffers and the key index's size")
	}
	return fit, true, nil
}
