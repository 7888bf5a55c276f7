package store

import (
	"context"
	"fmt"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// The bulk loader fills a new benchmark ledger with provisioned devices
// (`tacline bench provision --prefill N`, docs/benchmarks.md "A growing
// ledger"): for each device the rows provisioning writes (reservation, IMEIs
// bound, issuance intent issued, device claim, device key, certificate,
// device), the register outbox rows in a delivered state, and the audit
// log's leaves, IMEI index rows and stored hashes computed by package audit
// (audit.Bulk) for the events BulkEvents lists. One transaction per batch,
// with the store's multi-row writer. It refuses a ledger that already
// provisioned anything: a prefilled ledger is a benchmark ledger, never a
// production one.

// BulkDevice is one provisioned device as the bulk loader writes it.
type BulkDevice struct {
	RequestID   string
	RequestHash []byte
	Station     string // the reservation's caller, the device's station
	Serial      string // device serial
	IMEIs       []imei.IMEI
	CertSerial  string // lower-case hex
	IssuerKeyID string
	NotBefore   time.Time
	PublicKey   []byte // DER SubjectPublicKeyInfo
	SPKIHash    []byte
	DER         []byte // the certificate
	TBSHash     []byte
	ReservedAt  time.Time
	BoundAt     time.Time
}

// BulkBatch is one transaction of the loader: devices of one pool, whose
// IMEIs continue the pool's high-water mark in order, the register outbox
// rows of their events and the audit log's append of their events.
type BulkBatch struct {
	PoolID  int64
	Pool    string
	TAC     uint32
	Devices []BulkDevice
	Outbox  []OutboxRow
	Audit   *AuditAppend
}

// BulkEvents returns the events provisioning emits for the batch's devices,
// in the order the loader expects their audit leaves: for each device
// imei.reserved (Reserve) then imei.bound (CommitBinding).
func BulkEvents(b *BulkBatch) []Event {
	out := make([]Event, 0, 2*len(b.Devices))
	tac := imei.FormatTAC(b.TAC)
	for i := range b.Devices {
		d := &b.Devices[i]
		ims := imeiStrings(d.IMEIs)
		out = append(out,
			Event{Type: EventIMEIReserved, Time: d.ReservedAt.UTC().Truncate(time.Microsecond), Actor: d.Station, RequestID: d.RequestID,
				Pool: b.Pool, TAC: tac, IMEIs: ims, DeviceSerial: d.Serial},
			Event{Type: EventIMEIBound, Time: d.BoundAt.UTC().Truncate(time.Microsecond), Actor: d.Station, RequestID: d.RequestID,
				Pool: b.Pool, TAC: tac, IMEIs: ims, DeviceSerial: d.Serial, CertSerial: d.CertSerial})
	}
	return out
}

// bulkCacheKiB is the SQLite writer's page cache while a bulk load runs
// (3 GiB; the server's writer keeps 64 MiB).
const bulkCacheKiB = 3 << 20

// BulkLoader writes batches into a new ledger.
type BulkLoader struct {
	db *DB
}

// sqlBulkUsed counts the rows that make a ledger one that provisioned.
const sqlBulkUsed = `SELECT (SELECT COUNT(*) FROM reservations) + (SELECT COUNT(*) FROM imeis) + (SELECT COUNT(*) FROM devices)
	+ (SELECT COUNT(*) FROM certificates) + (SELECT COUNT(*) FROM issuances) + (SELECT COUNT(*) FROM register_outbox)
	+ (SELECT COUNT(*) FROM leases)`

// NewBulkLoader returns a loader of db, which must not have reserved,
// provisioned, leased or reported anything yet (a new ledger: catalogue,
// pools, issuers and stations only); otherwise invalid_state.
func (db *DB) NewBulkLoader(ctx context.Context) (*BulkLoader, error) {
	var n int64
	if err := db.r.GetContext(ctx, &n, sqlBulkUsed); err != nil {
		return nil, translate(err, "check the ledger is new")
	}
	if n > 0 {
		return nil, tacerr.New(tacerr.InvalidState, "the ledger already holds %d reservations, IMEIs, devices, certificates, intents, outbox rows or leases: prefill only a new benchmark ledger, never one in use", n)
	}
	if db.dialect == SQLite {
		// The loader's process (the bench command, never `tacline serve`)
		// keeps up to bulkCacheKiB of pages on the writer connection: the
		// index with random keys (device_keys.spki_hash, ~0.8 GB at 10^7
		// devices) is then read from the file once, not at every batch.
		if _, err := db.w.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size = -%d", bulkCacheKiB)); err != nil {
			return nil, translate(err, "bulk: page cache")
		}
	}
	return &BulkLoader{db: db}, nil
}

// Load writes one batch in one transaction: the pool's high-water mark
// must be where the batch's first IMEI is and the audit head where the
// batch's append starts, else conflict (nothing written).
func (l *BulkLoader) Load(ctx context.Context, b *BulkBatch) error {
	if len(b.Devices) == 0 {
		return nil
	}
	if b.Audit == nil || len(b.Audit.Leaves) != 2*len(b.Devices) {
		return tacerr.New(tacerr.InvalidInput, "bulk batch: the audit append must hold the %d events of BulkEvents", 2*len(b.Devices))
	}
	first, last := b.Devices[0].IMEIs[0], b.Devices[len(b.Devices)-1].IMEIs
	return l.db.InTx(ctx, func(tx *Tx) error {
		if err := tx.execRows(`UPDATE pools SET next_snr = ? WHERE id = ? AND next_snr = ?`,
			[]any{int64(last[len(last)-1].SNR()) + 1, b.PoolID, int64(first.SNR())}, 1, "advance pool "+b.Pool); err != nil {
			return err
		}
		ids, err := tx.bulkReservations(b)
		if err != nil {
			return err
		}
		if err := tx.bulkDevices(b, ids); err != nil {
			return err
		}
		if err := tx.bulkOutbox(b.Outbox); err != nil {
			return err
		}
		return tx.AppendAudit(b.Audit)
	})
}

// Finish ends a load. On PostgreSQL it runs ANALYZE, as autovacuum does on
// a ledger that grew over time: right after a bulk load the tables have no
// statistics, and the planner then chose sequential scans of the whole
// imeis and certificates tables for the per-batch device check and the
// revocation marks (measured with 10^6 prefilled devices,
// docs/benchmarks.md). SQLite's planner uses no statistics unless ANALYZE
// ran, which tacline never does: nothing to do there.
func (l *BulkLoader) Finish(ctx context.Context) error {
	if l.db.dialect != Postgres {
		return nil
	}
	if _, err := l.db.w.ExecContext(ctx, `ANALYZE`); err != nil {
		return translate(err, "bulk: analyze")
	}
	return nil
}

// bulkReservations inserts the batch's reservations and returns their ids
// by request id.
func (tx *Tx) bulkReservations(b *BulkBatch) (map[string]int64, error) {
	const cols = 10
	ids := make(map[string]int64, len(b.Devices))
	per := maxParams / cols
	for start := 0; start < len(b.Devices); start += per {
		ds := b.Devices[start:min(start+per, len(b.Devices))]
		args := make([]any, 0, cols*len(ds))
		for i := range ds {
			d := &ds[i]
			args = append(args, d.RequestID, d.RequestHash, b.PoolID, d.Station, KindProvision, d.Serial, 1, len(d.IMEIs), nil, d.ReservedAt.UnixMicro())
		}
		q := multiRow(`INSERT INTO reservations (request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, intent, created_at) VALUES `,
			"(?,?,?,?,?,?,?,?,?,?)", len(ds)) + " RETURNING id, request_id"
		rows, err := tx.queryx(tx.rebind(q), args...)
		if err != nil {
			return nil, translate(err, "bulk: insert reservations")
		}
		for rows.Next() {
			var id int64
			var rid string
			if err := rows.Scan(&id, &rid); err != nil {
				rows.Close()
				return nil, translate(err, "bulk: insert reservations")
			}
			ids[rid] = id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, translate(err, "bulk: insert reservations")
		}
	}
	if len(ids) != len(b.Devices) {
		return nil, tacerr.New(tacerr.Internal, "bulk: inserted %d reservations, expected %d", len(ids), len(b.Devices))
	}
	return ids, nil
}

// bulkDevices writes the IMEIs (bound), intents (issued), claims, device
// keys, certificates and devices of the batch.
func (tx *Tx) bulkDevices(b *BulkBatch, ids map[string]int64) error {
	imeis := tx.rows(`INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, device_serial, cert_serial, reserved_at, bound_at) VALUES `,
		"(?,?,?,?,?,'BOUND',?,?,?,?)", 9, "bulk: insert IMEIs")
	// intents as CommitBinding leaves them: issued, completed
	intents := tx.rows(`INSERT INTO issuances (request_id, kind, request_hash, station, device_serial, reservation_id, grp,
		cert_serial, not_before, issuer_key_id, public_key, spki_hash, state, created_at, completed_at) VALUES `,
		"(?,?,?,?,?,?,?,?,?,?,?,?,'issued',?,?)", 14, "bulk: insert issuance intents")
	claims := tx.rows(sqlInsertClaimHead, "(?,?,?)", 3, "bulk: claim device serials")
	keys := tx.rows(`INSERT INTO device_keys (spki_hash, device_serial) VALUES `, "(?,?)", 2, "bulk: claim device keys")
	certs := tx.rows(`INSERT INTO certificates (serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash, issued_at) VALUES `,
		"(?,?,?,?,?,?,?,?)", 8, "bulk: record certificates")
	devs := tx.rows(`INSERT INTO devices (serial, station, reservation_id, grp, state, cert_serial, bound_at) VALUES `,
		"(?,?,?,?,'BOUND',?,?)", 6, "bulk: record devices")
	for i := range b.Devices {
		d := &b.Devices[i]
		id := ids[d.RequestID]
		res, bound := d.ReservedAt.UnixMicro(), d.BoundAt.UnixMicro()
		for s, m := range d.IMEIs {
			if m.TAC() != b.TAC {
				return tacerr.New(tacerr.InvalidInput, "bulk: IMEI %s of device %s is not in pool %s's TAC", m, d.Serial, b.Pool)
			}
			if err := imeis.add(int64(m.Uint64()), b.PoolID, id, 0, s, d.Serial, d.CertSerial, res, bound); err != nil {
				return err
			}
		}
		if err := intents.add(d.RequestID, KindProvision, d.RequestHash, d.Station, d.Serial, id, 0, d.CertSerial, d.NotBefore.UnixMicro(),
			d.IssuerKeyID, d.PublicKey, d.SPKIHash, res, bound); err != nil {
			return err
		}
		if !tx.db.sql.claimsUntilBound { // SQLite: a recorded device holds its serial, no claim
			if err := claims.add(d.Serial, d.RequestID, res); err != nil {
				return err
			}
		}
		if err := keys.add(d.SPKIHash, d.Serial); err != nil {
			return err
		}
		if err := certs.add(d.CertSerial, d.Serial, d.RequestID, d.IssuerKeyID, d.DER, d.TBSHash, d.SPKIHash, bound); err != nil {
			return err
		}
		if err := devs.add(d.Serial, d.Station, id, 0, d.CertSerial, bound); err != nil {
			return err
		}
	}
	for _, w := range []*rowWriter{imeis, intents, claims, keys, certs, devs} {
		if err := w.flush(); err != nil {
			return err
		}
	}
	return nil
}

// bulkOutbox writes outbox rows as the register acknowledged them (one
// attempt, a receipt), counted in register_outbox_stats as the triggers
// count them (on PostgreSQL the per-row trigger is disabled inside the
// transaction and the count added once: thousands of updates of one row in
// one transaction would each walk the row's version chain).
func (tx *Tx) bulkOutbox(rows []OutboxRow) error {
	if len(rows) == 0 {
		return nil
	}
	pg := tx.db.dialect == Postgres
	if pg {
		if _, err := tx.exec(`ALTER TABLE register_outbox DISABLE TRIGGER register_outbox_acked_insert`); err != nil {
			return translate(err, "bulk: outbox trigger")
		}
	}
	w := tx.rows(`INSERT INTO register_outbox (idempotency_key, imei14, tac, event, device_id, model, brand, occurred_at, state, attempts,
		next_attempt_at, claimed_by, receipt_id, created_at, sent_at, done_at) VALUES `,
		"(?,?,?,?,?,?,?,?,'acknowledged',1,?,'prefill',?,?,?,?)", 13, "bulk: insert register outbox rows")
	for _, r := range rows {
		t := r.OccurredAt.UnixMicro()
		if err := w.add(r.Key, r.IMEI14, r.TAC, r.Event, r.DeviceID, r.Model, r.Brand, t, t, "prefill-"+r.Key, t, t, t); err != nil {
			return err
		}
	}
	if err := w.flush(); err != nil {
		return err
	}
	if pg {
		if _, err := tx.exec(`ALTER TABLE register_outbox ENABLE TRIGGER register_outbox_acked_insert`); err != nil {
			return translate(err, "bulk: outbox trigger")
		}
		return tx.execRows(`UPDATE register_outbox_stats SET value = value + ? WHERE name = 'acknowledged'`, []any{len(rows)}, 1, "bulk: count acknowledged rows")
	}
	return nil
}
