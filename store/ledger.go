package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/tacerr"
)

// IMEI states (defined in package lifecycle).
const (
	StateReserved = lifecycle.StateReserved
	StateBound    = lifecycle.StateBound
	StateVoided   = lifecycle.StateVoided
	StateRevoked  = lifecycle.StateRevoked
)

// IMEIRecord is one ledger row.
type IMEIRecord struct {
	IMEI          imei.IMEI
	Pool          string
	PoolID        int64
	ReservationID int64
	RequestID     string
	Caller        string
	Group         int
	Slot          int
	State         lifecycle.State
	DeviceSerial  string
	CertSerial    string
	Reason        string
	Note          string
	ReservedAt    time.Time
	BoundAt       time.Time // zero if never
	VoidedAt      time.Time
	RevokedAt     time.Time
}

type imeiRow struct {
	IMEI14        int64         `db:"imei14"`
	Pool          string        `db:"pool"`
	PoolID        int64         `db:"pool_id"`
	ReservationID int64         `db:"reservation_id"`
	RequestID     string        `db:"request_id"`
	Caller        string        `db:"caller"`
	Grp           int           `db:"grp"`
	Slot          int           `db:"slot"`
	State         string        `db:"state"`
	DeviceSerial  string        `db:"device_serial"`
	CertSerial    string        `db:"cert_serial"`
	Reason        string        `db:"reason"`
	Note          string        `db:"note"`
	ReservedAt    int64         `db:"reserved_at"`
	BoundAt       sql.NullInt64 `db:"bound_at"`
	VoidedAt      sql.NullInt64 `db:"voided_at"`
	RevokedAt     sql.NullInt64 `db:"revoked_at"`
}

const sqlIMEISelect = `SELECT i.imei14, p.name AS pool, i.pool_id, i.reservation_id, r.request_id, r.caller, i.grp, i.slot,
	i.state, i.device_serial, i.cert_serial, i.reason, i.note, i.reserved_at, i.bound_at, i.voided_at, i.revoked_at
	FROM imeis i JOIN pools p ON p.id = i.pool_id JOIN reservations r ON r.id = i.reservation_id `

func micros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func nullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return micros(v.Int64)
}

func (r imeiRow) record() (IMEIRecord, error) {
	m, err := imei.FromUint64(uint64(r.IMEI14))
	if err != nil {
		return IMEIRecord{}, tacerr.Wrap(tacerr.LedgerInvariant, err, "ledger row %d", r.IMEI14)
	}
	return IMEIRecord{
		IMEI: m, Pool: r.Pool, PoolID: r.PoolID, ReservationID: r.ReservationID, RequestID: r.RequestID, Caller: r.Caller,
		Group: r.Grp, Slot: r.Slot, State: lifecycle.State(r.State), DeviceSerial: r.DeviceSerial, CertSerial: r.CertSerial,
		Reason: r.Reason, Note: r.Note, ReservedAt: micros(r.ReservedAt), BoundAt: nullMicros(r.BoundAt),
		VoidedAt: nullMicros(r.VoidedAt), RevokedAt: nullMicros(r.RevokedAt),
	}, nil
}

func records(rows []imeiRow) ([]IMEIRecord, error) {
	out := make([]IMEIRecord, 0, len(rows))
	for _, r := range rows {
		rec, err := r.record()
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// querier is what reads need: a pool or a transaction.
type querier interface {
	Select(dest any, query string, args ...any) error
	Get(dest any, query string, args ...any) error
	Rebind(string) string
}

// txQuerier is a transaction as a querier (through the statement cache).
type txQuerier struct{ tx *Tx }

func (q txQuerier) Select(dest any, query string, args ...any) error {
	return q.tx.sel(dest, query, args...)
}
func (q txQuerier) Get(dest any, query string, args ...any) error {
	return q.tx.get(dest, query, args...)
}
func (q txQuerier) Rebind(s string) string { return q.tx.rebind(s) }

// LookupIMEI returns the ledger row of one IMEI, or not_found.
func (db *DB) LookupIMEI(ctx context.Context, m imei.IMEI) (IMEIRecord, error) {
	return lookupIMEI(db.r, m)
}

// LookupIMEI is LookupIMEI inside a transaction.
func (tx *Tx) LookupIMEI(m imei.IMEI) (IMEIRecord, error) { return lookupIMEI(txQuerier{tx}, m) }

func lookupIMEI(q querier, m imei.IMEI) (IMEIRecord, error) {
	var r imeiRow
	if err := q.Get(&r, q.Rebind(sqlIMEISelect+`WHERE i.imei14 = ?`), int64(m.Uint64())); err != nil {
		if noRows(err) {
			return IMEIRecord{}, tacerr.Field(tacerr.NotFound, "imei", "IMEI %s was never allocated by this ledger", m)
		}
		return IMEIRecord{}, translate(err, "look up IMEI")
	}
	return r.record()
}

// DeviceIMEIs returns the IMEIs bound (or once bound) to a device, in slot order.
func (db *DB) DeviceIMEIs(ctx context.Context, serial string) ([]IMEIRecord, error) {
	return deviceIMEIs(db.r, serial)
}

// sqlDeviceIMEIs: the redundant test that device_serial is not empty lets
// the query use the partial index imeis_device (SQLite scanned the whole
// ledger without it).
// sqlPoolOfIMEI names the pool of an IMEI (the bound event's pool).
const sqlPoolOfIMEI = `SELECT p.name FROM imeis i JOIN pools p ON p.id = i.pool_id WHERE i.imei14 = ?`

const sqlDeviceIMEIs = sqlIMEISelect + `WHERE i.device_serial = ? AND i.device_serial <> '' ORDER BY i.reservation_id, i.grp, i.slot`

func deviceIMEIs(q querier, serial string) ([]IMEIRecord, error) {
	var rows []imeiRow
	if err := q.Select(&rows, q.Rebind(sqlDeviceIMEIs), serial); err != nil {
		return nil, translate(err, "look up device IMEIs")
	}
	return records(rows)
}

// ReservationIMEIs returns the IMEIs of one reservation in group/slot order.
func (tx *Tx) ReservationIMEIs(reservationID int64) ([]IMEIRecord, error) {
	var rows []imeiRow
	if err := tx.sel(&rows, tx.rebind(sqlIMEISelect+`WHERE i.reservation_id = ? ORDER BY i.grp, i.slot`), reservationID); err != nil {
		return nil, translate(err, "look up reservation IMEIs")
	}
	return records(rows)
}

type reservationRow struct {
	ID           int64  `db:"id"`
	RequestID    string `db:"request_id"`
	RequestHash  []byte `db:"request_hash"`
	PoolID       int64  `db:"pool_id"`
	Pool         string `db:"pool"`
	TAC          uint32 `db:"tac"`
	Caller       string `db:"caller"`
	Kind         string `db:"kind"`
	DeviceSerial string `db:"device_serial"`
	Devices      int    `db:"devices"`
	PerDevice    int    `db:"per_device"`
	Intent       []byte `db:"intent"`
	CreatedAt    int64  `db:"created_at"`
}

const sqlReservationSelect = `SELECT r.id, r.request_id, r.request_hash, r.pool_id, p.name AS pool, p.tac, r.caller, r.kind,
	r.device_serial, r.devices, r.per_device, r.intent, r.created_at
	FROM reservations r JOIN pools p ON p.id = r.pool_id `

// reservationsByRequestID loads reservations with their IMEIs.
func (tx *Tx) reservationsByRequestID(ids []string) (map[string]*Reservation, error) {
	out := map[string]*Reservation{}
	if len(ids) == 0 {
		return out, nil
	}
	q, args, err := tx.in(sqlReservationSelect+`WHERE r.request_id IN (?)`, ids)
	if err != nil {
		return nil, err
	}
	var rows []reservationRow
	if err := tx.sel(&rows, q, args...); err != nil {
		return nil, translate(err, "look up reservations")
	}
	for _, row := range rows {
		r, err := tx.loadReservation(row)
		if err != nil {
			return nil, err
		}
		out[row.RequestID] = r
	}
	return out, nil
}

func (tx *Tx) loadReservation(row reservationRow) (*Reservation, error) {
	r := &Reservation{ID: row.ID, RequestID: row.RequestID, RequestHash: row.RequestHash, PoolID: row.PoolID, Pool: row.Pool,
		TAC: row.TAC, Caller: row.Caller, Kind: row.Kind, DeviceSerial: row.DeviceSerial, Intent: row.Intent,
		CreatedAt: micros(row.CreatedAt)}
	if r.RequestHash == nil {
		r.RequestHash = []byte{}
	}
	recs, err := tx.ReservationIMEIs(row.ID)
	if err != nil {
		return nil, err
	}
	r.Devices = make([][]imei.IMEI, row.Devices)
	for _, rec := range recs {
		if rec.Group >= row.Devices {
			return nil, tacerr.New(tacerr.LedgerInvariant, "reservation %s: IMEI %s in group %d of %d", row.RequestID, rec.IMEI, rec.Group, row.Devices)
		}
		r.Devices[rec.Group] = append(r.Devices[rec.Group], rec.IMEI)
	}
	return r, nil
}

// ReservationByRequestID returns the reservation made for a request id, or
// reservation_not_found.
func (tx *Tx) ReservationByRequestID(requestID string) (*Reservation, error) {
	m, err := tx.reservationsByRequestID([]string{requestID})
	if err != nil {
		return nil, err
	}
	r, ok := m[requestID]
	if !ok {
		return nil, tacerr.Field(tacerr.ReservationNotFound, "request_id", "no reservation for request id %q", requestID)
	}
	return r, nil
}

// ReservationByRequestID outside a transaction.
func (db *DB) ReservationByRequestID(ctx context.Context, requestID string) (*Reservation, error) {
	var r *Reservation
	err := db.readTx(ctx, func(tx *Tx) error {
		var err error
		r, err = tx.ReservationByRequestID(requestID)
		return err
	})
	return r, err
}

func oneRow(res sql.Result, format string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return translate(err, fmt.Sprintf(format, args...))
	}
	if n != 1 {
		return tacerr.New(tacerr.Conflict, format+": %d rows changed, expected 1", append(args, n)...)
	}
	return nil
}

// readTx runs fn in a read-only transaction on the read pool (a consistent
// snapshot).
func (db *DB) readTx(ctx context.Context, fn func(tx *Tx) error) error {
	opts := &sql.TxOptions{ReadOnly: db.sql.readOnlyTx}
	if db.sql.snapshotReads {
		// Check compares a pool's high-water mark with its rows, Pools
		// derives counts from both: one snapshot for all the statements.
		opts.Isolation = sql.LevelRepeatableRead
	}
	stx, err := db.r.BeginTxx(ctx, opts)
	if err != nil {
		return translate(err, "begin read")
	}
	defer stx.Rollback()
	return fn(&Tx{tx: stx, db: db})
}

// Tx.Bind's statements (see bindSets).
const (
	sqlBindReserved = `UPDATE imeis SET state = 'BOUND', cert_serial = ?, bound_at = ?
		WHERE imei14 IN (?) AND state = 'RESERVED' AND device_serial = ?`
	sqlBindPreallocated = `UPDATE imeis SET state = 'BOUND', device_serial = ?, cert_serial = ?, bound_at = ?
		WHERE imei14 IN (?) AND state = 'RESERVED' AND device_serial = ''`
)

// Bind moves a device's RESERVED IMEIs to BOUND with the device serial and
// certificate serial, and emits imei.bound. The IMEIs must all be RESERVED
// in one reservation group, for this device or for no device yet
// (pre-allocated).
func (tx *Tx) Bind(ims []imei.IMEI, deviceSerial, certSerial, actor, requestID string) error {
	if len(ims) == 0 {
		return tacerr.Field(tacerr.InvalidInput, "imeis", "at least one IMEI is required")
	}
	now := tx.Now().Truncate(time.Microsecond)
	keys := make([]int64, len(ims))
	for i, m := range ims {
		keys[i] = int64(m.Uint64())
	}
	// As bindBatch (bindSets): IMEIs reserved for this device first, the
	// device serial not assigned, then pre-allocated ones.
	bound := int64(0)
	for _, st := range []struct {
		q    string
		args []any
	}{
		{sqlBindReserved, []any{certSerial, now.UnixMicro(), keys, deviceSerial}},
		{sqlBindPreallocated, []any{deviceSerial, certSerial, now.UnixMicro(), keys}},
	} {
		q, args, err := tx.in(st.q, st.args...)
		if err != nil {
			return err
		}
		res, err := tx.exec(q, args...)
		if err != nil {
			return translate(err, "bind IMEIs")
		}
		n, err := res.RowsAffected()
		if err != nil {
			return translate(err, "bind IMEIs")
		}
		if bound += n; bound == int64(len(ims)) {
			break
		}
	}
	if bound != int64(len(ims)) {
		// Name the IMEI at fault; the transaction is rolled back.
		for _, m := range ims {
			rec, err := tx.LookupIMEI(m)
			if err != nil {
				return err
			}
			if rec.State == StateReserved && rec.DeviceSerial != "" && rec.DeviceSerial != deviceSerial {
				return tacerr.Field(tacerr.InvalidState, "imeis", "IMEI %s is reserved for device %s, not %s", m, rec.DeviceSerial, deviceSerial)
			}
			if rec.State != StateBound || rec.DeviceSerial != deviceSerial || rec.CertSerial != certSerial {
				return tacerr.Field(tacerr.InvalidState, "imeis", "IMEI %s is %s, not RESERVED", m, rec.State)
			}
		}
		return tacerr.Field(tacerr.InvalidState, "imeis", "an IMEI is listed twice")
	}
	var pool string
	if err := tx.get(&pool, tx.rebind(sqlPoolOfIMEI), keys[0]); err != nil {
		return translate(err, "look up pool")
	}
	tx.Emit(Event{Type: EventIMEIBound, Time: now, Actor: actor, RequestID: requestID, Pool: pool,
		TAC: ims[0].TACString(), IMEIs: imeiStrings(ims), DeviceSerial: deviceSerial, CertSerial: certSerial})
	return nil
}

// Void moves IMEIs to VOIDED forever (they are never reused) and emits one
// imei.voided event for them. A pending intent naming their device group is
// abandoned with them (abandonGroupIntents): a replay of its request id is
// answered with the abandonment, never signed again. RESERVED IMEIs may always be voided; BOUND
// ones only for a device scrapped before shipment (any reason but
// "abandoned", which is recovery's).
func (tx *Tx) Void(ims []imei.IMEI, reason lifecycle.VoidReason, note, actor, requestID string) error {
	if !reason.Valid() {
		return tacerr.Field(tacerr.InvalidInput, "reason", "%q is not a void reason: use scrapped, test, rework or other", reason)
	}
	now := tx.Now().Truncate(time.Microsecond)
	var ev Event
	type group struct {
		reservation int64
		grp         int
	}
	var groups []group
	for _, m := range ims {
		rec, err := tx.LookupIMEI(m)
		if err != nil {
			return err
		}
		if g := (group{rec.ReservationID, rec.Group}); !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
		switch {
		case rec.State == StateReserved:
		case rec.State == StateBound && reason != lifecycle.VoidAbandoned:
		default:
			return tacerr.Field(tacerr.InvalidState, "imei", "IMEI %s is %s and cannot be voided", m, rec.State)
		}
		res, err := tx.exec(tx.rebind(`UPDATE imeis SET state = 'VOIDED', reason = ?, note = ?, voided_at = ? WHERE imei14 = ? AND state = ?`),
			string(reason), note, now.UnixMicro(), int64(m.Uint64()), string(rec.State))
		if err != nil {
			return translate(err, "void IMEI")
		}
		if err := oneRow(res, "void IMEI %s", m); err != nil {
			return err
		}
		ev = Event{Type: EventIMEIVoided, Time: now, Actor: actor, RequestID: requestID, Pool: rec.Pool,
			TAC: m.TACString(), DeviceSerial: rec.DeviceSerial, CertSerial: rec.CertSerial, Reason: string(reason),
			Attrs: map[string]string{"previous_state": string(rec.State)}}
	}
	ev.IMEIs = imeiStrings(ims)
	tx.Emit(ev)
	for _, g := range groups {
		if err := tx.abandonGroupIntents(g.reservation, g.grp); err != nil {
			return err
		}
	}
	return nil
}

// Revoke moves a device's BOUND IMEIs to REVOKED and emits imei.revoked.
func (tx *Tx) Revoke(ims []imei.IMEI, reason lifecycle.RevokeReason, actor, requestID string) error {
	now := tx.Now().Truncate(time.Microsecond)
	var ev Event
	for _, m := range ims {
		rec, err := tx.LookupIMEI(m)
		if err != nil {
			return err
		}
		if rec.State != StateBound {
			return tacerr.Field(tacerr.InvalidState, "imei", "IMEI %s is %s, only BOUND IMEIs can be revoked", m, rec.State)
		}
		res, err := tx.exec(tx.rebind(`UPDATE imeis SET state = 'REVOKED', reason = ?, revoked_at = ? WHERE imei14 = ? AND state = 'BOUND'`),
			string(reason), now.UnixMicro(), int64(m.Uint64()))
		if err != nil {
			return translate(err, "revoke IMEI")
		}
		if err := oneRow(res, "revoke IMEI %s", m); err != nil {
			return err
		}
		ev = Event{Type: EventIMEIRevoked, Time: now, Actor: actor, RequestID: requestID, Pool: rec.Pool,
			TAC: m.TACString(), DeviceSerial: rec.DeviceSerial, CertSerial: rec.CertSerial, Reason: string(reason)}
	}
	ev.IMEIs = imeiStrings(ims)
	tx.Emit(ev)
	return nil
}

// RecordReissue updates the certificate serial of a device's BOUND IMEIs after a
// reissue and emits device.reissued.
func (tx *Tx) RecordReissue(ims []imei.IMEI, deviceSerial, newCertSerial, oldCertSerial, actor, requestID string) error {
	now := tx.Now().Truncate(time.Microsecond)
	for _, m := range ims {
		res, err := tx.exec(tx.rebind(`UPDATE imeis SET cert_serial = ? WHERE imei14 = ? AND state = 'BOUND' AND device_serial = ?`),
			newCertSerial, int64(m.Uint64()), deviceSerial)
		if err != nil {
			return translate(err, "rebind IMEI")
		}
		if err := oneRow(res, "rebind IMEI %s of device %s", m, deviceSerial); err != nil {
			return err
		}
	}
	tx.Emit(Event{Type: EventDeviceReissued, Time: now, Actor: actor, RequestID: requestID,
		TAC: ims[0].TACString(), IMEIs: imeiStrings(ims), DeviceSerial: deviceSerial, CertSerial: newCertSerial,
		Attrs: map[string]string{"previous_cert_serial": oldCertSerial}})
	return nil
}

// StaleReservations lists reservation ids with IMEIs still RESERVED that were
// reserved before the cutoff (for the recovery loop), by request id: at most
// limit, those after the request id after ("": from the first), so that
// recovery pages past reservations it could not void.
func (db *DB) StaleReservations(ctx context.Context, before time.Time, after string, limit int, kind string) ([]string, error) {
	var ids []string
	err := db.r.SelectContext(ctx, &ids, db.r.Rebind(`SELECT DISTINCT r.request_id FROM imeis i JOIN reservations r ON r.id = i.reservation_id
		WHERE i.state = 'RESERVED' AND i.reserved_at < ? AND r.kind = ? AND r.request_id > ? ORDER BY r.request_id LIMIT ?`), before.UnixMicro(), kind, after, limit)
	if err != nil {
		return nil, translate(err, "find stale reservations")
	}
	return ids, nil
}
