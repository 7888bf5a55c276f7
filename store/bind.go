package store

import (
	"context"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// Binding completes one issuance of kind provision or bind once its
// certificate is signed: the intent becomes issued, the device key is claimed
// for the device, the certificate and the device are recorded and the
// device's RESERVED IMEIs become BOUND (imei.bound event).
type Binding struct {
	RequestID     string
	DeviceSerial  string
	Station       string // the station that provisions the device (event actor)
	ReservationID int64
	Group         int
	CertSerial    string // lower-case hex
	IssuerKeyID   string
	DER           []byte
	TBSHash       []byte
	SPKIHash      []byte
	IMEIs         []imei.IMEI
	IssuedAt      time.Time
}

// CommitBinding records a binding in a transaction shared with other
// concurrent Commit, Reserve and CommitBinding calls (group commit) and
// returns once it committed. Concurrent bindings are written together with
// one multi-row statement per table; if that fails, each is rerun alone
// through BindDevice, so that errors are each binding's own: conflict (the
// intent is no longer pending, the certificate already recorded),
// key_reused, device_already_provisioned, invalid_state.
func (db *DB) CommitBinding(ctx context.Context, b *Binding) error {
	if len(b.IMEIs) == 0 {
		return tacerr.Field(tacerr.InvalidInput, "imeis", "at least one IMEI is required")
	}
	return db.submitWait(ctx, &bindWork{member: newMember(), bind: b})
}

// BindDevice records one binding statement by statement, naming the first
// check that fails (see CommitBinding).
func (tx *Tx) BindDevice(b *Binding) error {
	if err := tx.SetIssuanceState(b.RequestID, IssuanceIssued); err != nil {
		return err
	}
	if err := tx.ClaimDeviceKey(b.SPKIHash, b.DeviceSerial); err != nil {
		return err
	}
	if err := tx.InsertCertificate(&CertificateRecord{Serial: b.CertSerial, DeviceSerial: b.DeviceSerial, RequestID: b.RequestID,
		IssuerKeyID: b.IssuerKeyID, DER: b.DER, TBSHash: b.TBSHash, SPKIHash: b.SPKIHash, IssuedAt: b.IssuedAt}); err != nil {
		return err
	}
	if err := tx.InsertDevice(&DeviceRecord{Serial: b.DeviceSerial, Station: b.Station, ReservationID: b.ReservationID,
		Group: b.Group, CertSerial: b.CertSerial, BoundAt: b.IssuedAt}); err != nil {
		return err
	}
	if err := tx.settleClaims([]deviceClaim{{serial: b.DeviceSerial, requestID: b.RequestID}}); err != nil {
		return err
	}
	return tx.Bind(b.IMEIs, b.DeviceSerial, b.CertSerial, b.Station, b.RequestID)
}

// bindSets are the two ways an IMEI is bound. A provisioning reservation
// wrote the device serial on its IMEIs already: binding them leaves the
// column out of the SET list, because SQLite rewrites an index entry
// whenever its column is assigned, even to the value it holds (one dirty
// imeis_device leaf per device and commit, docs/benchmarks.md). IMEIs
// pre-allocated for devices not known then (device serial empty) get it
// now. An IMEI reserved for another device matches neither: the binding
// fails (Tx.Bind names it).
var bindSets = [2]struct{ set, match string }{
	{set: "", match: "v.column2"},
	{set: "device_serial = v.column2, ", match: "''"},
}

// On PostgreSQL (dialect bindOnce) a batch completes its intents and binds
// its IMEIs with one statement each that finds every row with one
// primary-key probe (a LATERAL subquery with LIMIT 1) and updates it by its
// ctid. Joined to the batch's rows as a table, PostgreSQL planned these
// updates on a sequential scan whenever it cached the plan while the table
// was small, and kept it as the ledger grew (see reserveread.go); the
// probes cost the same at any size. An IMEI is bound if it is RESERVED for
// its device or pre-allocated (device serial empty, set now: bindSets in
// one statement); one reserved for another device, bound already or
// voided is not, and the row count then fails the batch (Tx.Bind names
// the error when the member runs alone). A row another transaction
// changed meanwhile has another ctid and is not updated either.
const (
	sqlCompleteIntentsPG = `UPDATE issuances SET state = 'issued', completed_at = ?
	FROM (SELECT i.tid FROM unnest(?::text[]) AS k(id) CROSS JOIN LATERAL
		(SELECT ctid AS tid FROM issuances WHERE request_id = k.id AND state = 'pending' LIMIT 1) i) s
	WHERE issuances.ctid = s.tid`
	sqlBindIMEIsPG = `UPDATE imeis SET state = 'BOUND', device_serial = s.dev, cert_serial = s.cert, bound_at = ?
	FROM (SELECT i.tid, v.dev, v.cert FROM unnest(?::bigint[], ?::text[], ?::text[]) AS v(imei, dev, cert) CROSS JOIN LATERAL
		(SELECT ctid AS tid FROM imeis WHERE imei14 = v.imei AND state = 'RESERVED' AND device_serial IN (v.dev, '') LIMIT 1) i) s
	WHERE imeis.ctid = s.tid`
)

// sqlMeetKeyClaim ends bindBatch's insert of the device keys: a key its
// intent claimed already (claimKeys) for this device is counted (the
// update changes nothing); a key another device holds is neither inserted
// nor updated, and the row count then fails the batch (BindDevice names
// it key_reused). An intent recorded before keys were claimed with it has
// its key inserted here, as before.
const sqlMeetKeyClaim = ` ON CONFLICT (spki_hash) DO UPDATE SET device_serial = excluded.device_serial
	WHERE device_keys.device_serial = excluded.device_serial`

// bindBatch records several bindings with one statement per table. Any
// failure, including a row count that differs from what the batch expects,
// fails the whole transaction: the committer then reruns every member alone
// (BindDevice), which names the error. So the fast path never has to decide
// a per-binding error itself.
func (tx *Tx) bindBatch(bs []*Binding, bp *bindPools) error {
	n := len(bs)
	ids := make([]string, n)
	for i, b := range bs {
		ids[i] = b.RequestID
	}
	// 1. Intents pending -> issued.
	var q string
	var args []any
	var err error
	if tx.db.sql.bindOnce {
		q, args = sqlCompleteIntentsPG, []any{tx.Now().UnixMicro(), ids}
	} else if q, args, err = tx.in(`UPDATE issuances SET state = 'issued', completed_at = ? WHERE request_id IN (?) AND state = 'pending'`,
		tx.Now().UnixMicro(), ids); err != nil {
		return err
	}
	if err := tx.execRows(q, args, int64(n), "complete issuances"); err != nil {
		return err
	}
	// 2. Device keys (claimed with the intent; a key another device holds
	// fails the batch: sqlMeetKeyClaim),
	// 3. certificates, 4. devices.
	keys := tx.rows(sqlInsertKeysHead, "(?,?)", 2, "claim device keys").sized(n)
	keys.tail = sqlMeetKeyClaim
	certs := tx.rows(`INSERT INTO certificates (serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash, issued_at) VALUES `,
		"(?,?,?,?,?,?,?,?)", 8, "record certificates").sized(n)
	devs := tx.rows(`INSERT INTO devices (serial, station, reservation_id, grp, state, cert_serial, bound_at) VALUES `,
		"(?,?,?,?,'BOUND',?,?)", 6, "record devices").sized(n)
	for _, b := range bs {
		if err := keys.add(b.SPKIHash, b.DeviceSerial); err != nil {
			return err
		}
		if err := certs.add(b.CertSerial, b.DeviceSerial, b.RequestID, b.IssuerKeyID, b.DER, b.TBSHash, b.SPKIHash, b.IssuedAt.UnixMicro()); err != nil {
			return err
		}
		if err := devs.add(b.DeviceSerial, b.Station, b.ReservationID, b.Group, b.CertSerial, b.IssuedAt.UnixMicro()); err != nil {
			return err
		}
	}
	for _, w := range []*rowWriter{keys, certs, devs} {
		if err := w.flush(); err != nil {
			return err
		}
	}
	settled := make([]deviceClaim, n)
	for i, b := range bs {
		settled[i] = deviceClaim{serial: b.DeviceSerial, requestID: b.RequestID}
	}
	if err := tx.settleClaims(settled); err != nil {
		return err
	}
	// 5. IMEIs RESERVED -> BOUND, each with its device's serials: one
	// UPDATE ... FROM (VALUES ...) (SQLite 3.33+) for IMEIs reserved for
	// their device, a second for pre-allocated ones (see bindSets); one
	// statement on PostgreSQL (sqlBindIMEIsPG).
	now := tx.Now().Truncate(time.Microsecond)
	total := 0
	for _, b := range bs {
		total += len(b.IMEIs)
	}
	if tx.db.sql.bindOnce {
		// One array per column (unnest), built directly.
		imeis, devs, certs := make([]int64, 0, total), make([]string, 0, total), make([]string, 0, total)
		for _, b := range bs {
			for _, m := range b.IMEIs {
				imeis, devs, certs = append(imeis, int64(m.Uint64())), append(devs, b.DeviceSerial), append(certs, b.CertSerial)
			}
		}
		if err := tx.execRows(sqlBindIMEIsPG, []any{now.UnixMicro(), imeis, devs, certs}, int64(total), "bind IMEIs"); err != nil {
			return err
		}
	} else {
		args = make([]any, 1, 1+3*total)
		args[0] = now.UnixMicro()
		for _, b := range bs {
			for _, m := range b.IMEIs {
				args = append(args, int64(m.Uint64()), b.DeviceSerial, b.CertSerial)
			}
		}
		if err := tx.bindSets(args, total); err != nil {
			return err
		}
	}
	// 6. Pool names for the events (one read for the batch), with the
	// catalogue's names of their TACs, which the register outbox's rows
	// carry (Tx.TACNamesOf answers from them: no second read). On
	// PostgreSQL the read was made in the batch's first round trip (bp).
	if bp == nil {
		bp = newBindPools(bs)
	}
	if !bp.read {
		if tx.db.sql.pipeline {
			if err := tx.selAll([]pipedSel{bp.sel(tx)}); err != nil {
				return translate(err, "look up pools")
			}
		} else {
			q, args, err := tx.in(sqlBindPools, bp.firsts)
			if err != nil {
				return err
			}
			rows, err := tx.queryx(q, args...)
			if err != nil {
				return translate(err, "look up pools")
			}
			err = bp.scan(tx, rows)
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return translate(err, "look up pools")
			}
		}
	}
	pools := bp.pools
	for _, b := range bs {
		pool, ok := pools[int64(b.IMEIs[0].Uint64())]
		if !ok {
			return tacerr.New(tacerr.LedgerInvariant, "IMEI %s has no pool", b.IMEIs[0])
		}
		tx.Emit(Event{Type: EventIMEIBound, Time: now, Actor: b.Station, RequestID: b.RequestID, Pool: pool,
			TAC: b.IMEIs[0].TACString(), IMEIs: imeiStrings(b.IMEIs), DeviceSerial: b.DeviceSerial, CertSerial: b.CertSerial})
	}
	return nil
}

// bindSets binds the batch's IMEIs (args: bound_at, then imei14, device
// serial and certificate serial of each) with one statement per way of
// binding (bindSets); the row counts must add up to the batch's IMEIs, and
// the second runs only when the first left IMEIs unbound (pre-allocated
// ones).
func (tx *Tx) bindSets(args []any, total int) error {
	var bound int64
	for i, set := range bindSets {
		if i > 0 && bound == int64(total) {
			break
		}
		last := i == len(bindSets)-1
		from, vargs := tx.valuesTable("(CAST(? AS BIGINT),?,?)", 3, total, "v", args[1:])
		q := `UPDATE imeis SET state = 'BOUND', ` + set.set + `cert_serial = v.column3, bound_at = ? FROM ` + from +
			` WHERE imeis.imei14 = v.column1 AND imeis.state = 'RESERVED' AND imeis.device_serial = ` + set.match
		if err := tx.execCheck(q, append(args[:1:1], vargs...), func(k int64) error {
			if bound += k; bound > int64(total) || last && bound != int64(total) {
				return rowCount(bound, int64(total), "bind IMEIs")
			}
			return nil
		}, "bind IMEIs"); err != nil {
			return err
		}
	}
	return nil
}
