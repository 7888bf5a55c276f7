package store

import (
	"context"
	"strings"
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
	return db.submitWait(ctx, &pending{bind: b, done: make(chan struct{})})
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
	return tx.Bind(b.IMEIs, b.DeviceSerial, b.CertSerial, b.Station, b.RequestID)
}

// bindBatch records several bindings with one statement per table. Any
// failure, including a row count that differs from what the batch expects,
// fails the whole transaction: the committer then reruns every member alone
// (BindDevice), which names the error. So the fast path never has to decide
// a per-binding error itself.
func (tx *Tx) bindBatch(bs []*Binding) error {
	n := len(bs)
	ids := make([]string, n)
	for i, b := range bs {
		ids[i] = b.RequestID
	}
	// 1. Intents pending -> issued.
	q, args, err := tx.in(`UPDATE issuances SET state = 'issued', completed_at = ? WHERE request_id IN (?) AND state = 'pending'`,
		tx.Now().UnixMicro(), ids)
	if err != nil {
		return err
	}
	if err := tx.execRows(q, args, int64(n), "complete issuances"); err != nil {
		return err
	}
	// 2. Device keys (unique: a key already bound fails the batch).
	args = make([]any, 0, 2*n)
	for _, b := range bs {
		args = append(args, b.SPKIHash, b.DeviceSerial)
	}
	if err := tx.execRows(multiRow(`INSERT INTO device_keys (spki_hash, device_serial) VALUES `, "(?,?)", n), args, int64(n), "claim device keys"); err != nil {
		return err
	}
	// 3. Certificates.
	args = make([]any, 0, 8*n)
	for _, b := range bs {
		args = append(args, b.CertSerial, b.DeviceSerial, b.RequestID, b.IssuerKeyID, b.DER, b.TBSHash, b.SPKIHash, b.IssuedAt.UnixMicro())
	}
	if err := tx.execRows(multiRow(`INSERT INTO certificates (serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash, issued_at) VALUES `,
		"(?,?,?,?,?,?,?,?)", n), args, int64(n), "record certificates"); err != nil {
		return err
	}
	// 4. Devices.
	args = make([]any, 0, 6*n)
	for _, b := range bs {
		args = append(args, b.DeviceSerial, b.Station, b.ReservationID, b.Group, b.CertSerial, b.IssuedAt.UnixMicro())
	}
	if err := tx.execRows(multiRow(`INSERT INTO devices (serial, station, reservation_id, grp, state, cert_serial, bound_at) VALUES `,
		"(?,?,?,?,'BOUND',?,?)", n), args, int64(n), "record devices"); err != nil {
		return err
	}
	// 5. IMEIs RESERVED -> BOUND, each with its device's serials: one
	// UPDATE ... FROM (VALUES ...) (SQLite 3.33+, PostgreSQL).
	now := tx.Now().Truncate(time.Microsecond)
	total := 0
	args = []any{now.UnixMicro()}
	firsts := make([]int64, n)
	for i, b := range bs {
		firsts[i] = int64(b.IMEIs[0].Uint64())
		for _, m := range b.IMEIs {
			args = append(args, int64(m.Uint64()), b.DeviceSerial, b.CertSerial)
			total++
		}
	}
	var sb strings.Builder
	sb.WriteString(`UPDATE imeis SET state = 'BOUND', device_serial = v.column2, cert_serial = v.column3, bound_at = ? FROM (VALUES `)
	for i := 0; i < total; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString("(CAST(? AS BIGINT),?,?)")
	}
	sb.WriteString(`) AS v WHERE imeis.imei14 = v.column1 AND imeis.state = 'RESERVED'`)
	if err := tx.execRows(tx.Rebind(sb.String()), args, int64(total), "bind IMEIs"); err != nil {
		return err
	}
	// 6. Pool names for the events (one read for the batch).
	q, args, err = tx.in(`SELECT i.imei14, p.name FROM imeis i JOIN pools p ON p.id = i.pool_id WHERE i.imei14 IN (?)`, firsts)
	if err != nil {
		return err
	}
	rows, err := tx.Queryx(q, args...)
	if err != nil {
		return translate(err, "look up pools")
	}
	pools := make(map[int64]string, n)
	for rows.Next() {
		var k int64
		var name string
		if err := rows.Scan(&k, &name); err != nil {
			rows.Close()
			return translate(err, "look up pools")
		}
		pools[k] = name
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return translate(err, "look up pools")
	}
	for i, b := range bs {
		pool, ok := pools[firsts[i]]
		if !ok {
			return tacerr.New(tacerr.LedgerInvariant, "IMEI %s has no pool", b.IMEIs[0])
		}
		tx.Emit(Event{Type: EventIMEIBound, Time: now, Actor: b.Station, RequestID: b.RequestID, Pool: pool,
			TAC: b.IMEIs[0].TACString(), IMEIs: imeiStrings(b.IMEIs), DeviceSerial: b.DeviceSerial, CertSerial: b.CertSerial})
	}
	return nil
}

// multiRow returns head followed by rows copies of tuple, rebinding is left
// to execRows.
func multiRow(head, tuple string, rows int) string {
	var sb strings.Builder
	sb.Grow(len(head) + rows*(len(tuple)+1))
	sb.WriteString(head)
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(tuple)
	}
	return sb.String()
}

// execRows runs a statement that must change exactly want rows.
func (tx *Tx) execRows(q string, args []any, want int64, what string) error {
	res, err := tx.Exec(tx.Rebind(q), args...)
	if err != nil {
		return translate(err, what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return translate(err, what)
	}
	if n != want {
		return tacerr.New(tacerr.Conflict, "%s: %d rows changed, expected %d", what, n, want)
	}
	return nil
}
