package store

import (
	"context"
	"database/sql"

	"github.com/tacline/tacline/lifecycle"
)

// Bulk reads of the whole ledger (reconciliation), streaming: rows are
// never all in memory.

const (
	sqlTACNumbers = `SELECT tac FROM tacs`
	// sqlIMEIStates maps the state to a number in SQL, so that rows scan
	// into integers without allocating.
	sqlIMEIStates = `SELECT imei14, CASE state WHEN 'RESERVED' THEN 1 WHEN 'BOUND' THEN 2 WHEN 'VOIDED' THEN 3
    WHEN 'REVOKED' THEN 4 ELSE 0 END, device_serial FROM imeis`
)

var stateByCode = [...]lifecycle.State{"", StateReserved, StateBound, StateVoided, StateRevoked}

// CatalogTACs calls fn for every TAC of the catalogue (the manufacturer's
// TACs), in no particular order. An error from fn stops the walk and is
// returned as is.
func (db *DB) CatalogTACs(ctx context.Context, fn func(tac uint32) error) error {
	rows, err := db.r.QueryContext(ctx, sqlTACNumbers)
	if err != nil {
		return translate(err, "read the manufacturer's TACs")
	}
	defer rows.Close()
	for rows.Next() {
		var tac int64
		if err := rows.Scan(&tac); err != nil {
			return translate(err, "read TAC")
		}
		if err := fn(uint32(tac)); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "read the manufacturer's TACs")
}

// IMEIStates calls fn for every ledger row with its 14-digit IMEI, its
// state (one of the State* constants; "" for a state the store does not
// know, which the caller treats as a broken ledger) and the serial of the
// device it is bound to (nil when none; the bytes are valid only during
// the call), in no particular order, streaming. An error from fn stops the
// walk and is returned as is.
func (db *DB) IMEIStates(ctx context.Context, fn func(imei14 uint64, state lifecycle.State, deviceSerial []byte) error) error {
	rows, err := db.r.QueryContext(ctx, sqlIMEIStates)
	if err != nil {
		return translate(err, "read ledger IMEIs")
	}
	defer rows.Close()
	var n, st int64
	var serial sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&n, &st, &serial); err != nil {
			return translate(err, "read ledger IMEI")
		}
		var s lifecycle.State
		if st > 0 && st < int64(len(stateByCode)) {
			s = stateByCode[st]
		}
		if err := fn(uint64(n), s, serial); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "read ledger IMEIs")
}
