package dirbs

import (
	"archive/zip"
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

const (
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
)

// listRow is one registration list row. device is the device serial in a
// full list, the device id the outbox reported in a delta (deviceID says
// which).
type listRow struct {
	imei14                                    int64
	device, brand, model, number, kind, radio string
	deviceID                                  bool
}

func (r listRow) write(w *bufio.Writer, changeType string) error {
	m, err := imei.FromUint64(uint64(r.imei14))
	if err != nil {
		return tacerr.Wrap(tacerr.LedgerInvariant, err, "ledger IMEI %d", r.imei14)
	}
	id := r.device
	if !r.deviceID {
		id = wire.DeviceIDOf(r.device, m)
	}
	w.WriteString(m.Digits14())
	for _, f := range []string{r.brand, r.model, "whitelist", r.number, r.brand, r.kind, r.radio, id} {
		w.WriteByte(',')
		w.WriteString(csvField(f))
	}
	if changeType != "" {
		w.WriteByte(',')
		w.WriteString(changeType)
	}
	return w.WriteByte('\n')
}

// ExportRegistrationList writes the DIRBS registration list of every bound
// IMEI to path (a .zip holding one CSV of the same base name) or, when
// deltaSince is not 0, the changes since that export with a change_type
// column (add, remove, update). approved_imei is the 14-digit form.
func ExportRegistrationList(ctx context.Context, db *store.DB, path string, deltaSince int64) (Export, error) {
	e := Export{Kind: KindList, File: path, Since: deltaSince}
	if !strings.EqualFold(filepath.Ext(path), ".zip") {
		return e, tacerr.Field(tacerr.InvalidInput, "output", "%s: a DIRBS registration list is a .zip file", path)
	}
	var since int64
	if deltaSince != 0 {
		e.Kind = KindDelta
		var kind string
		err := db.Reader().QueryRowxContext(ctx, db.Reader().Rebind(sqlExportByID), deltaSince).Scan(&kind, &since)
		if errors.Is(err, sql.ErrNoRows) {
			return e, tacerr.Field(tacerr.NotFound, "delta-since", "export %d does not exist: give the id of an earlier registration-list export", deltaSince)
		}
		if err != nil {
			return e, store.Translate(err, fmt.Sprintf("read export %d", deltaSince))
		}
		if kind == KindDRS {
			return e, tacerr.Field(tacerr.InvalidInput, "delta-since", "export %d is a DRS file, not a registration list", deltaSince)
		}
		if err := checkRetention(ctx, db, deltaSince, since); err != nil {
			return e, err
		}
	}
	hw, err := highWater(ctx, db)
	if err != nil {
		return e, err
	}
	e.HighWater = hw
	af, err := createAtomic(path)
	if err != nil {
		return e, err
	}
	defer af.abort()
	zw := zip.NewWriter(af)
	inner := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + ".csv"
	// The entry's time is the export's (zip.Writer.Create would write the
	// invalid DOS date 0).
	zf, err := zw.CreateHeader(&zip.FileHeader{Name: inner, Method: zip.Deflate, Modified: db.Now()})
	if err != nil {
		return e, tacerr.Wrap(tacerr.InvalidInput, err, "write %s", path)
	}
	bw := bufio.NewWriterSize(zf, 1<<16)
	if deltaSince == 0 {
		e.Rows, err = writeList(ctx, db.Reader(), bw)
	} else {
		e.Rows, err = writeDelta(ctx, db.Reader(), bw, since, hw)
	}
	if err != nil {
		return e, err
	}
	if deltaSince != 0 {
		// Retention running meanwhile may have deleted rows of the window
		// before the read saw them: check again after it.
		if err := checkRetention(ctx, db, deltaSince, since); err != nil {
			return e, err
		}
	}
	if err := bw.Flush(); err != nil {
		return e, tacerr.Wrap(tacerr.InvalidInput, err, "write %s", path)
	}
	if err := zw.Close(); err != nil {
		return e, tacerr.Wrap(tacerr.InvalidInput, err, "write %s", path)
	}
	if err := af.commit(); err != nil {
		return e, err
	}
	return e, record(ctx, db, &e)
}

// checkRetention refuses a delta since export id (high-water mark since)
// when retention deleted outbox rows after that mark: the delta would miss
// their events.
func checkRetention(ctx context.Context, db *store.DB, id, since int64) error {
	through, err := prunedThrough(ctx, db)
	if err != nil {
		return err
	}
	if through > since {
		return tacerr.Field(tacerr.InvalidInput, "delta-since",
			"export %d (outbox high-water mark %d) is older than the register outbox retention: events up to outbox id %d were pruned; write a full registration list and take deltas from it", id, since, through)
	}
	return nil
}

func writeList(ctx context.Context, q *sqlx.DB, w *bufio.Writer) (int64, error) {
	w.WriteString(Header + "\n")
	rows, err := q.QueryContext(ctx, sqlListRows)
	if err != nil {
		return 0, store.Translate(err, "read bound IMEIs")
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		var r listRow
		if err := rows.Scan(&r.imei14, &r.device, &r.brand, &r.model, &r.number, &r.kind, &r.radio); err != nil {
			return n, store.Translate(err, "read bound IMEI")
		}
		if err := r.write(w, ""); err != nil {
			return n, writeErr(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, store.Translate(err, "read bound IMEIs")
	}
	return n, nil
}

func writeDelta(ctx context.Context, q *sqlx.DB, w *bufio.Writer, since, hw int64) (int64, error) {
	w.WriteString(DeltaHeader + "\n")
	rows, err := q.QueryContext(ctx, q.Rebind(sqlDeltaRows), since, hw, since, hw, since, hw)
	if err != nil {
		return 0, store.Translate(err, "read outbox changes")
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		r := listRow{deviceID: true} // the id the outbox reported
		var event string
		var listedAtSince int
		if err := rows.Scan(&r.imei14, &event, &r.device, &r.brand, &r.model, &r.number, &r.kind, &r.radio, &listedAtSince); err != nil {
			return n, store.Translate(err, "read outbox change")
		}
		listed := listedAtSince == 1
		var change string
		switch event {
		case wire.EventRegistered, wire.EventUpdated:
			change = "add"
			if listed {
				change = "update"
			}
		case wire.EventVoided, wire.EventRevoked:
			if !listed {
				continue // never on the list: nothing to remove
			}
			change = "remove"
		}
		if err := r.write(w, change); err != nil {
			return n, writeErr(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, store.Translate(err, "read outbox changes")
	}
	return n, nil
}

func writeErr(err error) error {
	if _, ok := tacerr.As(err); ok {
		return err
	}
	if errors.Is(err, io.ErrShortWrite) {
		return tacerr.Wrap(tacerr.InvalidInput, err, "write export (disk full?)")
	}
	return tacerr.Wrap(tacerr.InvalidInput, err, "write export")
}
