package dirbs

import (
	"bufio"
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// sqlDRSRows streams bound IMEIs grouped by device, slot order.
const sqlDRSRows = `SELECT i.device_serial, i.imei14 FROM imeis i
JOIN pools p ON p.id = i.pool_id JOIN tacs t ON t.tac = p.tac
WHERE i.state = 'BOUND' AND i.device_serial <> '' %s
ORDER BY i.device_serial, i.slot, i.imei14`

// MaxIMEIsPerDevice is the most IMEIs a DRS row holds.
const MaxIMEIsPerDevice = 5

// ExportDRS writes the DIRBS device-registration bulk upload to path: a TSV
// without header, one bound device per row, its IMEIs (15 digits) one per
// column. models, if not empty, keeps devices of those TAC model names.
func ExportDRS(ctx context.Context, db *store.DB, path string, models []string) (Export, error) {
	e := Export{Kind: KindDRS, File: path}
	hw, err := highWater(ctx, db)
	if err != nil {
		return e, err
	}
	e.HighWater = hw
	q, args := sqlDRSRows, []any{}
	if len(models) > 0 {
		var err error
		q, args, err = sqlx.In(fmtQ(q, "AND t.model_name IN (?)"), models)
		if err != nil {
			return e, tacerr.Wrap(tacerr.Internal, err, "model filter")
		}
	} else {
		q = fmtQ(q, "")
	}
	r := db.Reader()
	rows, err := r.QueryContext(ctx, r.Rebind(q), args...)
	if err != nil {
		return e, store.Translate(err, "read bound devices")
	}
	defer rows.Close()
	af, err := createAtomic(path)
	if err != nil {
		return e, err
	}
	defer af.abort()
	w := bufio.NewWriterSize(af, 1<<16)
	cur, count := "", 0
	var buf [15]byte
	for rows.Next() {
		var device string
		var n int64
		if err := rows.Scan(&device, &n); err != nil {
			return e, store.Translate(err, "read bound device")
		}
		m, err := imei.FromUint64(uint64(n))
		if err != nil {
			return e, tacerr.Wrap(tacerr.LedgerInvariant, err, "ledger IMEI %d", n)
		}
		if device != cur || e.Rows == 0 {
			if e.Rows > 0 {
				w.WriteByte('\n')
			}
			cur, count = device, 0
			e.Rows++
		} else {
			w.WriteByte('\t')
		}
		count++
		if count > MaxIMEIsPerDevice {
			return e, tacerr.New(tacerr.LedgerInvariant, "device %q has more than %d bound IMEIs: a DRS row holds 1 to 5", device, MaxIMEIsPerDevice)
		}
		w.Write(m.Append(buf[:0]))
	}
	if err := rows.Err(); err != nil {
		return e, store.Translate(err, "read bound devices")
	}
	if e.Rows > 0 {
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return e, writeErr(err)
	}
	if err := af.commit(); err != nil {
		return e, err
	}
	return e, record(ctx, db, &e)
}

func fmtQ(q, filter string) string {
	return fmt.Sprintf(q, filter)
}
