package store

import (
	"context"
	"fmt"
)

// Register exports (DIRBS registration lists and deltas, DRS uploads) read
// the ledger here, streaming, and are recorded in register_exports.

// ExportRecord is one written export as register_exports keeps it.
type ExportRecord struct {
	ID        int64
	Kind      string
	File      string
	Rows      int64
	HighWater int64 // outbox high-water mark the export covers
	Since     int64 // base export of a delta (0: none)
}

// ListedIMEI is a bound IMEI with its device serial and its TAC's
// catalogue names (a registration list row).
type ListedIMEI struct {
	IMEI14                                int64
	DeviceSerial                          string
	Brand, Model, ModelNumber, DeviceType string
	Radio                                 string
}

// ListChange is the last outbox event of one IMEI in a window of outbox
// ids, with the names it was reported with and whether the IMEI was on the
// registration list at the window's start (Listed).
type ListChange struct {
	IMEI14                  int64
	Event                   string
	DeviceID                string
	Brand, Model            string
	ModelNumber, DeviceType string
	Radio                   string
	Listed                  bool
}

const (
	// The high-water mark is never below the pruned rows' ids (ids are
	// never reused), even when retention deleted every row.
	sqlHighWater  = `SELECT COALESCE(MAX(id), 0), (SELECT value FROM register_outbox_stats WHERE name = 'pruned_through') FROM register_outbox`
	sqlExportByID = `SELECT kind, outbox_high_water FROM register_exports WHERE id = ?`
	sqlAddExport  = `INSERT INTO register_exports (kind, created_at, outbox_high_water, since_export, rows, file)
VALUES (?, ?, ?, ?, ?, ?) RETURNING id`
	// sqlListRows streams the bound IMEIs with their TAC's names.
	sqlListRows = `SELECT i.imei14, i.device_serial, t.brand, t.model_name, t.model_number, t.device_type, t.radio_interfaces
FROM imeis i JOIN pools p ON p.id = i.pool_id JOIN tacs t ON t.tac = p.tac
WHERE i.state = 'BOUND' ORDER BY i.imei14`
	// sqlDeltaRows streams, per IMEI changed in (since, hw], its last event
	// there and whether it was on the list at since. That is read from the
	// ledger and the window alone, never from outbox rows at or before since
	// (retention may have deleted them): an IMEI's events are registered
	// once, then updated, then at most one of voided or revoked, so it was
	// listed at since if and only if it was ever bound and its registration
	// is not inside the window.
	sqlDeltaRows = `SELECT o.imei14, o.event, o.device_id, o.brand, o.model, t.model_number, t.device_type, t.radio_interfaces,
    CASE WHEN (i.bound_at IS NOT NULL OR i.state IN ('BOUND', 'REVOKED'))
          AND NOT EXISTS (SELECT 1 FROM register_outbox r
                          WHERE r.imei14 = o.imei14 AND r.event = 'registered' AND r.id > ? AND r.id <= ?)
         THEN 1 ELSE 0 END AS listed
FROM register_outbox o JOIN tacs t ON t.tac = o.tac JOIN imeis i ON i.imei14 = o.imei14
WHERE o.id > ? AND o.id <= ?
  AND o.id = (SELECT MAX(l.id) FROM register_outbox l WHERE l.imei14 = o.imei14 AND l.id > ? AND l.id <= ?)
ORDER BY o.imei14`
	// sqlDRSRows streams bound IMEIs grouped by device, slot order.
	sqlDRSRows = `SELECT i.device_serial, i.imei14 FROM imeis i
JOIN pools p ON p.id = i.pool_id JOIN tacs t ON t.tac = p.tac
WHERE i.state = 'BOUND' AND i.device_serial <> '' %s
ORDER BY i.device_serial, i.slot, i.imei14`
)

// OutboxHighWater returns the largest outbox id below which every row is
// committed (on PostgreSQL it waits for the transactions writing outbox
// rows to end), never below the ids retention deleted.
func (db *DB) OutboxHighWater(ctx context.Context) (int64, error) {
	var hw int64
	err := db.InTx(ctx, func(tx *Tx) error {
		if q := db.sql.lockOutbox; q != "" {
			if _, err := tx.exec(q); err != nil {
				return translate(err, "read the outbox high-water mark")
			}
		}
		var through int64
		if err := tx.queryRowx(sqlHighWater).Scan(&hw, &through); err != nil {
			return translate(err, "read the outbox high-water mark")
		}
		hw = max(hw, through)
		return nil
	})
	return hw, err
}

// Export returns the kind and outbox high-water mark of export id; found
// is false when there is none.
func (db *DB) Export(ctx context.Context, id int64) (kind string, highWater int64, found bool, err error) {
	err = db.r.QueryRowxContext(ctx, db.r.Rebind(sqlExportByID), id).Scan(&kind, &highWater)
	if noRows(err) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, translate(err, fmt.Sprintf("read export %d", id))
	}
	return kind, highWater, true, nil
}

// RecordExport adds an export to register_exports and sets its ID.
func (db *DB) RecordExport(ctx context.Context, e *ExportRecord) error {
	return db.InTx(ctx, func(tx *Tx) error {
		var since any
		if e.Since > 0 {
			since = e.Since
		}
		return translate(tx.get(&e.ID, tx.rebind(sqlAddExport), e.Kind, tx.Now().UnixMicro(), e.HighWater, since, e.Rows, e.File),
			"record export of "+e.File)
	})
}

// BoundIMEIs calls fn for every bound IMEI in IMEI order, streaming. An
// error from fn stops the walk and is returned as is.
func (db *DB) BoundIMEIs(ctx context.Context, fn func(ListedIMEI) error) error {
	rows, err := db.r.QueryContext(ctx, sqlListRows)
	if err != nil {
		return translate(err, "read bound IMEIs")
	}
	defer rows.Close()
	for rows.Next() {
		var r ListedIMEI
		if err := rows.Scan(&r.IMEI14, &r.DeviceSerial, &r.Brand, &r.Model, &r.ModelNumber, &r.DeviceType, &r.Radio); err != nil {
			return translate(err, "read bound IMEI")
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "read bound IMEIs")
}

// ListChanges calls fn, in IMEI order and streaming, for each IMEI with
// outbox rows whose id is in (since, highWater]: its last event there.
// It reads only the ledger and that window, so outbox rows at or before
// since may have been pruned.
func (db *DB) ListChanges(ctx context.Context, since, highWater int64, fn func(ListChange) error) error {
	rows, err := db.r.QueryContext(ctx, db.r.Rebind(sqlDeltaRows), since, highWater, since, highWater, since, highWater)
	if err != nil {
		return translate(err, "read outbox changes")
	}
	defer rows.Close()
	for rows.Next() {
		var c ListChange
		var listed int
		if err := rows.Scan(&c.IMEI14, &c.Event, &c.DeviceID, &c.Brand, &c.Model, &c.ModelNumber, &c.DeviceType, &c.Radio, &listed); err != nil {
			return translate(err, "read outbox change")
		}
		c.Listed = listed == 1
		if err := fn(c); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "read outbox changes")
}

// BoundDeviceIMEIs calls fn for every bound IMEI of a device (with a
// serial), grouped by device serial in slot order, streaming; models, if
// not empty, keeps IMEIs of those TAC model names.
func (db *DB) BoundDeviceIMEIs(ctx context.Context, models []string, fn func(deviceSerial string, imei14 int64) error) error {
	q, args := fmt.Sprintf(sqlDRSRows, ""), []any{}
	if len(models) > 0 {
		var err error
		if q, args, err = sqlxIn(fmt.Sprintf(sqlDRSRows, "AND t.model_name IN (?)"), models); err != nil {
			return err
		}
	}
	rows, err := db.r.QueryContext(ctx, db.r.Rebind(q), args...)
	if err != nil {
		return translate(err, "read bound devices")
	}
	defer rows.Close()
	for rows.Next() {
		var device string
		var n int64
		if err := rows.Scan(&device, &n); err != nil {
			return translate(err, "read bound device")
		}
		if err := fn(device, n); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "read bound devices")
}
