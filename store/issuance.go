package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/tacerr"
)

// Issuance states.
const (
	IssuancePending   = "pending"
	IssuanceIssued    = "issued"
	IssuanceAbandoned = "abandoned"
)

// Issuance is the intent to sign one device certificate, recorded before
// the HSM signs. Serial, NotBefore, IssuerKeyID and PublicKey fix the TBS
// certificate together with the IMEIs of the reservation group.
type Issuance struct {
	RequestID     string
	Kind          string // provision | bind | reissue
	RequestHash   []byte
	Station       string
	DeviceSerial  string
	ReservationID int64
	Group         int
	CertSerial    string
	NotBefore     time.Time
	IssuerKeyID   string
	PublicKey     []byte // DER SubjectPublicKeyInfo
	SPKIHash      []byte
	State         string
	CreatedAt     time.Time
}

type issuanceRow struct {
	RequestID     string `db:"request_id"`
	Kind          string `db:"kind"`
	RequestHash   []byte `db:"request_hash"`
	Station       string `db:"station"`
	DeviceSerial  string `db:"device_serial"`
	ReservationID int64  `db:"reservation_id"`
	Grp           int    `db:"grp"`
	CertSerial    string `db:"cert_serial"`
	NotBefore     int64  `db:"not_before"`
	IssuerKeyID   string `db:"issuer_key_id"`
	PublicKey     []byte `db:"public_key"`
	SPKIHash      []byte `db:"spki_hash"`
	State         string `db:"state"`
	CreatedAt     int64  `db:"created_at"`
}

const sqlSelectIssuance = `SELECT request_id, kind, request_hash, station, device_serial, reservation_id, grp, cert_serial,
	not_before, issuer_key_id, public_key, spki_hash, state, created_at FROM issuances`

func (r issuanceRow) issuance() *Issuance {
	return &Issuance{RequestID: r.RequestID, Kind: r.Kind, RequestHash: r.RequestHash, Station: r.Station, DeviceSerial: r.DeviceSerial,
		ReservationID: r.ReservationID, Group: r.Grp, CertSerial: r.CertSerial, NotBefore: micros(r.NotBefore),
		IssuerKeyID: r.IssuerKeyID, PublicKey: r.PublicKey, SPKIHash: r.SPKIHash, State: r.State, CreatedAt: micros(r.CreatedAt)}
}

// InsertIssuance records an intent (state pending). A reissue intent is
// refused (invalid_state) while another reissue of the device is pending:
// whichever completed second would supersede the first's certificate, which
// its caller had been answered with. A bind intent claims its pre-allocated
// group (claimGroup): refused while another bind of the group is pending or
// once the group is no longer RESERVED, before its HSM signature.
func (tx *Tx) InsertIssuance(is *Issuance) error {
	switch is.Kind {
	case "reissue":
		if err := tx.refuseConcurrentReissue(is); err != nil {
			return err
		}
	case "bind":
		if err := tx.claimGroup(is); err != nil {
			return err
		}
	}
	_, err := tx.exec(tx.rebind(`INSERT INTO issuances (request_id, kind, request_hash, station, device_serial, reservation_id, grp,
		cert_serial, not_before, issuer_key_id, public_key, spki_hash, state, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'pending',?)`),
		is.RequestID, is.Kind, is.RequestHash, is.Station, is.DeviceSerial, is.ReservationID, is.Group, is.CertSerial,
		is.NotBefore.UnixMicro(), is.IssuerKeyID, is.PublicKey, is.SPKIHash, tx.Now().UnixMicro())
	if isDuplicate(err) {
		return tacerr.Field(tacerr.RequestConflict, "request_id", "request id %q is in use", is.RequestID)
	}
	if err != nil {
		return translate(err, "record issuance intent")
	}
	if is.Kind == "bind" { // a provision intent claims its serial and key with its reservation (reserveBatch)
		if err := tx.claimDevices([]deviceClaim{{serial: is.DeviceSerial, requestID: is.RequestID}}); err != nil {
			return err
		}
		return tx.claimKeys([]keyClaim{{spkiHash: is.SPKIHash, serial: is.DeviceSerial}})
	}
	return nil
}

// sqlPendingReissue finds a pending reissue intent of a device; the
// literal state and the created_at test match the partial index
// issuances_pending (only intents in flight are read).
const sqlPendingReissue = `SELECT request_id FROM issuances WHERE state = 'pending' AND created_at IS NOT NULL
	AND kind = 'reissue' AND device_serial = ? AND request_id <> ? LIMIT 1`

// refuseConcurrentReissue fails with invalid_state when another reissue of
// is's device is pending. The device's row is locked first (PostgreSQL), so
// that of two replicas recording reissues of one device the second reads
// the first's intent once it committed.
func (tx *Tx) refuseConcurrentReissue(is *Issuance) error {
	var serials []string
	if err := tx.sel(&serials, tx.rebind(`SELECT serial FROM devices WHERE serial = ?`+tx.db.sql.forUpdate), is.DeviceSerial); err != nil {
		return translate(err, "lock device")
	}
	var pending []string
	if err := tx.sel(&pending, tx.rebind(sqlPendingReissue), is.DeviceSerial, is.RequestID); err != nil {
		return translate(err, "look up pending reissues")
	}
	if len(pending) > 0 {
		return tacerr.Field(tacerr.InvalidState, "serial",
			"device %q is being reissued by request %q, not completed yet: its certificate would supersede this one; replay that request, or retry once it completed or recovery abandoned it", is.DeviceSerial, pending[0])
	}
	return nil
}

// sqlPendingOfGroup finds the pending intents that name one device group
// (a provision or bind intent signing its IMEIs, a reissue intent its
// device's); the literal state and the created_at test match the partial
// index issuances_pending (only intents in flight are read).
const sqlPendingOfGroup = `SELECT request_id FROM issuances WHERE state = 'pending' AND created_at IS NOT NULL
	AND reservation_id = ? AND grp = ? ORDER BY request_id`

// pendingOfGroup returns the request ids of the pending intents naming a
// device group.
func (tx *Tx) pendingOfGroup(reservationID int64, grp int) ([]string, error) {
	var ids []string
	if err := tx.sel(&ids, tx.rebind(sqlPendingOfGroup), reservationID, grp); err != nil {
		return nil, translate(err, "look up pending intents of a device group")
	}
	return ids, nil
}

// abandonGroupIntents abandons the pending intents naming a device group
// whose IMEIs were just voided in tx: no replay of them may sign a
// certificate for IMEIs that can never be bound (each replay would sign one
// more, and none could be recorded). Their device serials' claims are
// released (SetIssuanceState). Run after the IMEIs' rows were updated, so
// that on PostgreSQL an intent another transaction recorded for the group
// meanwhile (it holds the rows, Tx.InsertIssuance) is read once it
// committed.
func (tx *Tx) abandonGroupIntents(reservationID int64, grp int) error {
	ids, err := tx.pendingOfGroup(reservationID, grp)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := tx.SetIssuanceState(id, IssuanceAbandoned); err != nil {
			return err
		}
	}
	return nil
}

// sqlLockGroup reads a device group's IMEI states, holding the rows until
// the transaction ends (PostgreSQL; SQLite has one writer).
const sqlLockGroup = `SELECT imei14, state FROM imeis WHERE reservation_id = ? AND grp = ? ORDER BY slot`

// claimGroup is a bind intent's claim on its pre-allocated group, taken in
// the transaction that records the intent, so that of two binds of one
// group (two stations scanning one label) the loser is refused before it
// signs: invalid_state while another bind intent of the group is pending,
// or once an IMEI of the group is no longer RESERVED (bound, voided). The
// group's rows are locked first (PostgreSQL), so that the second of two
// concurrent binds reads the first's intent once it committed, and a
// binding or void of the group, which updates those rows, is read too.
func (tx *Tx) claimGroup(is *Issuance) error {
	var rows []struct {
		IMEI14 int64  `db:"imei14"`
		State  string `db:"state"`
	}
	if err := tx.sel(&rows, tx.rebind(sqlLockGroup+tx.db.sql.forUpdate), is.ReservationID, is.Group); err != nil {
		return translate(err, "lock device group")
	}
	if len(rows) == 0 {
		return tacerr.Field(tacerr.ReservationNotFound, "imeis", "device group %d of reservation %d holds no IMEIs", is.Group, is.ReservationID)
	}
	for _, r := range rows {
		if r.State != string(StateReserved) {
			m, err := imei.FromUint64(uint64(r.IMEI14))
			if err != nil {
				return tacerr.Wrap(tacerr.LedgerInvariant, err, "IMEI %d", r.IMEI14)
			}
			return tacerr.Field(tacerr.InvalidState, "imeis", "IMEI %s is %s, not RESERVED", m, r.State)
		}
	}
	pending, err := tx.pendingOfGroup(is.ReservationID, is.Group)
	if err != nil {
		return err
	}
	for _, id := range pending {
		if id != is.RequestID {
			return tacerr.Field(tacerr.InvalidState, "imeis",
				"this device group is being bound by request %q, not completed yet; nothing was recorded: replay that request, or bind again once recovery abandoned it (after the intent timeout)", id)
		}
	}
	return nil
}

const sqlInsertIssuanceHead = `INSERT INTO issuances (request_id, kind, request_hash, station, device_serial, reservation_id, grp,
		cert_serial, not_before, issuer_key_id, public_key, spki_hash, state, created_at) VALUES `

// insertIntents records the issuance intents of a reservation batch with one
// statement. A duplicate fails the batch (the committer reruns each member
// alone, where it is request_conflict).
func (tx *Tx) insertIntents(made []*reserveWork) error {
	created := tx.Now().UnixMicro()
	w := tx.rows(sqlInsertIssuanceHead, "(?,?,?,?,?,?,?,?,?,?,?,?,'pending',?)", 13, "record issuance intents").sized(len(made))
	var first string
	n := 0
	w.onDuplicate = func(err error) error {
		if n == 1 {
			return tacerr.Field(tacerr.RequestConflict, "request_id", "request id %q is in use", first)
		}
		return tacerr.Wrap(tacerr.Conflict, err, "record issuance intents")
	}
	for _, p := range made {
		is := p.req.Issuance
		if is == nil {
			continue
		}
		if n == 0 {
			first = is.RequestID
		}
		n++
		if err := w.add(is.RequestID, is.Kind, is.RequestHash, is.Station, is.DeviceSerial, p.res.ID, 0, is.CertSerial,
			is.NotBefore.UnixMicro(), is.IssuerKeyID, is.PublicKey, is.SPKIHash, created); err != nil {
			return err
		}
	}
	return w.flush()
}

// IssuanceByRequestID returns the intent for a request id, or nil.
func (db *DB) IssuanceByRequestID(ctx context.Context, requestID string) (*Issuance, error) {
	var r issuanceRow
	err := db.getR(ctx, &r, db.r.Rebind(sqlSelectIssuance+` WHERE request_id = ?`), requestID)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "look up issuance")
	}
	return r.issuance(), nil
}

// PendingIssuances lists intents still pending that were created before the
// cutoff (for the recovery loop), oldest first: at most limit, those after
// the intent after (nil: from the oldest; else the last one of the previous
// page, by creation time and request id). Recovery pages through them all,
// so that intents it cannot abandon yet (their revocation at an upstream CA
// keeps failing) never hide the newer ones.
func (db *DB) PendingIssuances(ctx context.Context, before time.Time, after *Issuance, limit int) ([]*Issuance, error) {
	q, args := sqlSelectIssuance+` WHERE state = 'pending' AND created_at < ?`, []any{before.UnixMicro()}
	if after != nil {
		at := after.CreatedAt.UnixMicro()
		q, args = q+` AND (created_at > ? OR (created_at = ? AND request_id > ?))`, append(args, at, at, after.RequestID)
	}
	var rows []issuanceRow
	if err := db.r.SelectContext(ctx, &rows, db.r.Rebind(q+` ORDER BY created_at, request_id LIMIT ?`), append(args, limit)...); err != nil {
		return nil, translate(err, "list pending issuances")
	}
	out := make([]*Issuance, len(rows))
	for i, r := range rows {
		out[i] = r.issuance()
	}
	return out, nil
}

// SetIssuanceState moves a pending intent to issued or abandoned; it fails
// with conflict if the intent is no longer pending (another replica
// completed it).
func (tx *Tx) SetIssuanceState(requestID, state string) error {
	res, err := tx.exec(tx.rebind(`UPDATE issuances SET state = ?, completed_at = ? WHERE request_id = ? AND state = 'pending'`),
		state, tx.Now().UnixMicro(), requestID)
	if err != nil {
		return translate(err, "complete issuance")
	}
	n, _ := res.RowsAffected()
	if n != 1 {
		return tacerr.Field(tacerr.Conflict, "request_id", "issuance %q is no longer pending", requestID)
	}
	if state == IssuanceAbandoned {
		if err := tx.releaseClaim(requestID); err != nil {
			return err
		}
		return tx.releaseKey(requestID)
	}
	return nil
}

// GroupIMEIs returns the IMEIs of one device group of a reservation.
func (tx *Tx) GroupIMEIs(reservationID int64, grp int) ([]IMEIRecord, error) {
	var rows []imeiRow
	if err := tx.sel(&rows, tx.rebind(sqlIMEISelect+`WHERE i.reservation_id = ? AND i.grp = ? ORDER BY i.slot`), reservationID, grp); err != nil {
		return nil, translate(err, "look up device group")
	}
	return records(rows)
}

// GroupIMEIs outside a transaction.
func (db *DB) GroupIMEIs(ctx context.Context, reservationID int64, grp int) ([]IMEIRecord, error) {
	var out []IMEIRecord
	err := db.readTx(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.GroupIMEIs(reservationID, grp)
		return err
	})
	return out, err
}

// CertificateRecord is an issued device certificate.
type CertificateRecord struct {
	Serial       string
	DeviceSerial string
	RequestID    string
	IssuerKeyID  string
	DER          []byte
	TBSHash      []byte
	SPKIHash     []byte
	IssuedAt     time.Time
	RevokedAt    time.Time // zero if not revoked
	RevokeReason lifecycle.RevokeReason
}

type certRow struct {
	Serial       string                 `db:"serial"`
	DeviceSerial string                 `db:"device_serial"`
	RequestID    string                 `db:"request_id"`
	IssuerKeyID  string                 `db:"issuer_key_id"`
	DER          []byte                 `db:"der"`
	TBSHash      []byte                 `db:"tbs_hash"`
	SPKIHash     []byte                 `db:"spki_hash"`
	IssuedAt     int64                  `db:"issued_at"`
	RevokedAt    sql.NullInt64          `db:"revoked_at"`
	RevokeReason lifecycle.RevokeReason `db:"revoke_reason"`
}

func (r certRow) record() *CertificateRecord {
	return &CertificateRecord{Serial: r.Serial, DeviceSerial: r.DeviceSerial, RequestID: r.RequestID, IssuerKeyID: r.IssuerKeyID,
		DER: r.DER, TBSHash: r.TBSHash, SPKIHash: r.SPKIHash, IssuedAt: micros(r.IssuedAt), RevokedAt: nullMicros(r.RevokedAt),
		RevokeReason: r.RevokeReason}
}

const sqlSelectCert = `SELECT serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash, issued_at, revoked_at, revoke_reason FROM certificates`

// InsertCertificate records an issued certificate.
func (tx *Tx) InsertCertificate(c *CertificateRecord) error {
	_, err := tx.exec(tx.rebind(`INSERT INTO certificates (serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash, issued_at)
		VALUES (?,?,?,?,?,?,?,?)`), c.Serial, c.DeviceSerial, c.RequestID, c.IssuerKeyID, c.DER, c.TBSHash, c.SPKIHash, c.IssuedAt.UnixMicro())
	if isDuplicate(err) {
		return tacerr.Field(tacerr.Conflict, "request_id", "certificate %s or request %s already recorded", c.Serial, c.RequestID)
	}
	return translate(err, "record certificate")
}

// sqlCertByRequest reads a request's certificate through its intent: the
// intent (primary key request_id) names the certificate serial (primary key
// of certificates). certificates.request_id has no index of its own (one
// dirty index leaf less per device, migration 0012).
const sqlCertByRequest = `SELECT c.serial, c.device_serial, c.request_id, c.issuer_key_id, c.der, c.tbs_hash, c.spki_hash, c.issued_at,
	c.revoked_at, c.revoke_reason FROM issuances s JOIN certificates c ON c.serial = s.cert_serial AND c.request_id = s.request_id
	WHERE s.request_id = ?`

// CertificateByRequestID returns the certificate issued for a request, or nil.
func (db *DB) CertificateByRequestID(ctx context.Context, requestID string) (*CertificateRecord, error) {
	return db.oneCert(ctx, sqlCertByRequest, requestID)
}

// CertificateBySerial returns a certificate by its hex serial, or nil.
func (db *DB) CertificateBySerial(ctx context.Context, serial string) (*CertificateRecord, error) {
	return db.oneCert(ctx, sqlSelectCert+` WHERE serial = ?`, serial)
}

func (db *DB) oneCert(ctx context.Context, query string, arg any) (*CertificateRecord, error) {
	var r certRow
	err := db.getR(ctx, &r, db.r.Rebind(query), arg)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "look up certificate")
	}
	return r.record(), nil
}

// RevokeCertificate marks a certificate revoked (idempotent for an already
// revoked one: the first reason stays).
func (tx *Tx) RevokeCertificate(serial string, reason lifecycle.RevokeReason) error {
	_, err := tx.exec(tx.rebind(`UPDATE certificates SET revoked_at = ?, revoke_reason = ? WHERE serial = ? AND revoked_at IS NULL`),
		tx.Now().UnixMicro(), string(reason), serial)
	return translate(err, "revoke certificate")
}

// RevokedCertificates streams the revoked certificates of one issuer (for
// CRLs and OCSP), calling fn for each.
func (db *DB) RevokedCertificates(ctx context.Context, issuerKeyID string, fn func(serial string, at time.Time, reason string) error) error {
	rows, err := db.r.QueryxContext(ctx, db.r.Rebind(`SELECT serial, revoked_at, revoke_reason FROM certificates
		WHERE issuer_key_id = ? AND revoked_at IS NOT NULL ORDER BY serial`), issuerKeyID)
	if err != nil {
		return translate(err, "list revoked certificates")
	}
	defer rows.Close()
	for rows.Next() {
		var s, reason string
		var at int64
		if err := rows.Scan(&s, &at, &reason); err != nil {
			return translate(err, "list revoked certificates")
		}
		if err := fn(s, micros(at), reason); err != nil {
			return err
		}
	}
	return translate(rows.Err(), "list revoked certificates")
}

// DeviceRecord is a provisioned device.
type DeviceRecord struct {
	Serial        string
	Station       string
	ReservationID int64
	Group         int
	State         lifecycle.State // BOUND | REVOKED | VOIDED
	CertSerial    string
	BoundAt       time.Time
	RevokedAt     time.Time
	Reason        string
}

type deviceRow struct {
	Serial        string        `db:"serial"`
	Station       string        `db:"station"`
	ReservationID int64         `db:"reservation_id"`
	Grp           int           `db:"grp"`
	State         string        `db:"state"`
	CertSerial    string        `db:"cert_serial"`
	BoundAt       int64         `db:"bound_at"`
	RevokedAt     sql.NullInt64 `db:"revoked_at"`
	Reason        string        `db:"reason"`
}

const sqlSelectDevice = `SELECT serial, station, reservation_id, grp, state, cert_serial, bound_at, revoked_at, reason FROM devices`

func (r deviceRow) record() *DeviceRecord {
	return &DeviceRecord{Serial: r.Serial, Station: r.Station, ReservationID: r.ReservationID, Group: r.Grp, State: lifecycle.State(r.State),
		CertSerial: r.CertSerial, BoundAt: micros(r.BoundAt), RevokedAt: nullMicros(r.RevokedAt), Reason: r.Reason}
}

// Device returns a device record, or nil.
func (db *DB) Device(ctx context.Context, serial string) (*DeviceRecord, error) {
	var r deviceRow
	err := db.getR(ctx, &r, db.r.Rebind(sqlSelectDevice+` WHERE serial = ?`), serial)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "look up device")
	}
	return r.record(), nil
}

// Device inside a transaction.
func (tx *Tx) Device(serial string) (*DeviceRecord, error) {
	var r deviceRow
	err := tx.get(&r, tx.rebind(sqlSelectDevice+` WHERE serial = ?`), serial)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "look up device")
	}
	return r.record(), nil
}

// InsertDevice records a newly bound device.
func (tx *Tx) InsertDevice(d *DeviceRecord) error {
	_, err := tx.exec(tx.rebind(`INSERT INTO devices (serial, station, reservation_id, grp, state, cert_serial, bound_at) VALUES (?,?,?,?,'BOUND',?,?)`),
		d.Serial, d.Station, d.ReservationID, d.Group, d.CertSerial, d.BoundAt.UnixMicro())
	if isDuplicate(err) {
		return tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial", "device %q is already provisioned", d.Serial)
	}
	return translate(err, "record device")
}

// UpdateDevice changes a device's state, certificate serial and reason.
func (tx *Tx) UpdateDevice(serial string, state lifecycle.State, certSerial, reason string) error {
	q := `UPDATE devices SET state = ?, cert_serial = ?, reason = ? WHERE serial = ?`
	args := []any{state, certSerial, reason, serial}
	if state == StateRevoked || state == StateVoided {
		q = `UPDATE devices SET state = ?, cert_serial = ?, reason = ?, revoked_at = ? WHERE serial = ?`
		args = []any{state, certSerial, reason, tx.Now().UnixMicro(), serial}
	}
	res, err := tx.exec(tx.rebind(q), args...)
	if err != nil {
		return translate(err, "update device")
	}
	return oneRow(res, "update device %s", serial)
}

// ClaimDeviceKey binds a device public key (by SPKI hash) to a device. A key
// already bound to another device is key_reused (a cloning signal); the same
// device may present its key again.
func (tx *Tx) ClaimDeviceKey(spkiHash []byte, deviceSerial string) error {
	var owner string
	err := tx.get(&owner, tx.rebind(`SELECT device_serial FROM device_keys WHERE spki_hash = ?`), spkiHash)
	switch {
	case noRows(err):
		_, err = tx.exec(tx.rebind(`INSERT INTO device_keys (spki_hash, device_serial) VALUES (?, ?)`), spkiHash, deviceSerial)
		if isDuplicate(err) {
			return tacerr.Field(tacerr.KeyReused, "csr", "this public key was just bound to another device")
		}
		return translate(err, "claim device key")
	case err != nil:
		return translate(err, "look up device key")
	case owner != deviceSerial:
		return tacerr.Field(tacerr.KeyReused, "csr", "this public key is already bound to another device: a device key must be unique (key reuse is a cloning signal)")
	}
	return nil
}

// DeviceKeyOwner returns the device a public key is bound to, or "".
func (db *DB) DeviceKeyOwner(ctx context.Context, spkiHash []byte) (string, error) {
	var owner string
	err := db.getR(ctx, &owner, db.r.Rebind(`SELECT device_serial FROM device_keys WHERE spki_hash = ?`), spkiHash)
	if noRows(err) {
		return "", nil
	}
	return owner, translate(err, "look up device key")
}

// RequestCheck is what a provisioning request needs to know before it
// reserves anything (NewRequestCheck, StationRequestCheckOf).
type RequestCheck struct {
	Issuance     *Issuance // the intent recorded for the request id (a replay), or nil
	DeviceExists bool      // the device is recorded
	KeyOwner     string    // the device the public key is bound to, or ""
}

// sqlRequestCheck reads the intent of a request id (if any), whether the
// device is recorded and who holds the key, in one statement (one round
// trip, one implicit transaction).
const sqlRequestCheck = `SELECT CASE WHEN EXISTS (SELECT 1 FROM devices WHERE serial = ?) THEN 1 ELSE 0 END AS device_exists,
	COALESCE((SELECT device_serial FROM device_keys WHERE spki_hash = ?), '') AS key_owner,
	CASE WHEN i.request_id IS NULL THEN 0 ELSE 1 END AS found,
	COALESCE(i.request_id, '') AS request_id, COALESCE(i.kind, '') AS kind, i.request_hash, COALESCE(i.station, '') AS station,
	COALESCE(i.device_serial, '') AS device_serial, COALESCE(i.reservation_id, 0) AS reservation_id, COALESCE(i.grp, 0) AS grp,
	COALESCE(i.cert_serial, '') AS cert_serial, COALESCE(i.not_before, 0) AS not_before, COALESCE(i.issuer_key_id, '') AS issuer_key_id,
	i.public_key, i.spki_hash, COALESCE(i.state, '') AS state, COALESCE(i.created_at, 0) AS created_at
	FROM (SELECT 1 AS one) x LEFT JOIN issuances i ON i.request_id = ?`

// NewRequestCheck reads, in one statement, the intent already recorded for
// requestID (nil if none: "" never names one), whether the device serial is
// recorded and which device the key (by SPKI hash) is bound to: the reads
// IssuanceByRequestID and the new-device checks (a device recorded, a key
// bound) would make, in one read; "" reads only the new-device checks.
func (db *DB) NewRequestCheck(ctx context.Context, requestID, serial string, spkiHash []byte) (RequestCheck, error) {
	var r struct {
		Exists int    `db:"device_exists"`
		Owner  string `db:"key_owner"`
		Found  int    `db:"found"`
		issuanceRow
	}
	if err := db.getR(ctx, &r, db.rebind(sqlRequestCheck), serial, spkiHash, requestID); err != nil {
		return RequestCheck{}, translate(err, "look up request, device and key")
	}
	c := RequestCheck{DeviceExists: r.Exists != 0, KeyOwner: r.Owner}
	if r.Found != 0 {
		c.Issuance = r.issuanceRow.issuance()
	}
	return c, nil
}

// IMEIsOf returns the IMEIs of ledger records.
func IMEIsOf(recs []IMEIRecord) []imei.IMEI {
	out := make([]imei.IMEI, len(recs))
	for i, r := range recs {
		out[i] = r.IMEI
	}
	return out
}
