package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// A site's side of leases and sync (docs/sites.md). A lease HQ granted
// becomes a pool of the site's ledger whose range is the lease's, named
// HeldLeasePoolName(hqPool, leaseID); the allocator hands its SNRs out in
// order like any pool's. Stations keep naming HQ's pool: the provisioner
// resolves that name to the oldest held lease with SNRs left
// (HeldLeasePool).

// HeldLease is a lease HQ granted to this site.
type HeldLease struct {
	LeaseID int64
	HQPool  string // the pool at HQ (the name stations use)
	// HQSNRStart and HQSNREnd are the HQ pool's range (every lease of it
	// lies inside; stations check their IMEIs against it).
	HQSNRStart, HQSNREnd uint32
	Pool                 Pool // the pool of this ledger that holds the lease's range
	GrantedAt            time.Time
	ExpiresAt            time.Time
	// ClosedAt is when the site closed the lease's pool for allocation
	// (ReleaseHeldLease), ReleasedAt when it wrote lease.released (zero:
	// not yet).
	ClosedAt, ReleasedAt time.Time
}

// HeldLeaseStats is a held lease with its pool's high-water mark.
type HeldLeaseStats struct {
	HeldLease
	NextSNR uint32
	Free    int64 // SNRs never handed out
}

// HeldLeasePoolName is the name of the pool that holds a lease at a site.
func HeldLeasePoolName(hqPool string, leaseID int64) string {
	return hqPool + ".lease" + strconv.FormatInt(leaseID, 10)
}

// RecordHeldLease records a lease HQ granted: its pool (the lease's TAC and
// range, with HQ pool's factory, line, product and market) and the lease,
// in one transaction, emitting pool.created. Recording a lease id again
// changes nothing (a retried request). Errors: tac_unknown (import the
// catalogue at the site first), pool_overlap (a lease overlapping one held
// already: HQ never grants that), invalid_input.
func (db *DB) RecordHeldLease(ctx context.Context, l HeldLease, actor string) error {
	l.Pool.Name = HeldLeasePoolName(l.HQPool, l.LeaseID)
	if err := l.Pool.Validate(); err != nil {
		return err
	}
	if l.HQSNRStart > l.Pool.SNRStart || l.HQSNREnd < l.Pool.SNREnd {
		return tacerr.Field(tacerr.InvalidInput, "pool_snr_start", "lease %d (%06d-%06d) does not lie in its HQ pool's range %06d-%06d", l.LeaseID,
			l.Pool.SNRStart, l.Pool.SNREnd, l.HQSNRStart, l.HQSNREnd)
	}
	return db.InTx(ctx, func(tx *Tx) error {
		// The request this lease answers is done (LeaseAsk).
		if _, err := tx.exec(tx.rebind(`DELETE FROM lease_asks WHERE hq_pool = ?`), l.HQPool); err != nil {
			return translate(err, "clear the lease request")
		}
		var n int
		if err := tx.get(&n, tx.rebind(`SELECT COUNT(*) FROM held_leases WHERE lease_id = ?`), l.LeaseID); err != nil {
			return translate(err, "look up held lease")
		}
		if n > 0 {
			return nil
		}
		if err := tx.get(&n, tx.rebind(`SELECT COUNT(*) FROM tacs WHERE tac = ?`), int64(l.Pool.TAC)); err != nil {
			return translate(err, "look up TAC")
		}
		if n == 0 {
			return tacerr.Field(tacerr.TACUnknown, "tac", "TAC %s of the lease is not in this site's catalogue; import HQ's catalogue (`tacline tac import`)", imei.FormatTAC(l.Pool.TAC))
		}
		p := l.Pool
		err := tx.queryRowx(tx.rebind(sqlInsertPool+" RETURNING id"), p.Name, int64(p.TAC), int64(p.SNRStart), int64(p.SNREnd),
			int64(p.SNRStart), p.Factory, p.Line, p.Product, p.Market, tx.Now().UnixMicro()).Scan(&p.ID)
		switch {
		case err == nil:
		case isExclusion(err):
			return tacerr.Field(tacerr.PoolOverlap, "lease", "lease %d (%06d-%06d) overlaps a pool of TAC %s held already", l.LeaseID, p.SNRStart, p.SNREnd, imei.FormatTAC(p.TAC))
		default:
			return translate(err, "record lease pool")
		}
		if _, err := tx.exec(tx.rebind(`INSERT INTO held_leases (lease_id, pool_id, hq_pool, hq_snr_start, hq_snr_end, expires_at, granted_at)
			VALUES (?,?,?,?,?,?,?)`), l.LeaseID, p.ID, l.HQPool, int64(l.HQSNRStart), int64(l.HQSNREnd), l.ExpiresAt.UnixMicro(), l.GrantedAt.UnixMicro()); err != nil {
			return translate(err, "record held lease")
		}
		tx.Emit(Event{Type: EventPoolCreated, Actor: actor, Pool: p.Name, TAC: imei.FormatTAC(p.TAC),
			Attrs: map[string]string{"snr_start": pad6(p.SNRStart), "snr_end": pad6(p.SNREnd), "factory": p.Factory,
				"line": p.Line, "product": p.Product, "market": p.Market, "lease": strconv.FormatInt(l.LeaseID, 10),
				"hq_pool": l.HQPool, "expires_at": l.ExpiresAt.Format(time.RFC3339)}})
		return nil
	})
}

const sqlSelectHeld = `SELECT h.lease_id, h.hq_pool, h.hq_snr_start, h.hq_snr_end, h.expires_at, h.granted_at, h.closed_at, h.unused_from, h.released_at,
	p.id, p.name, p.tac, p.snr_start, p.snr_end, p.next_snr, p.factory, p.line, p.product, p.market FROM held_leases h JOIN pools p ON p.id = h.pool_id`

type heldRow struct {
	LeaseID    int64         `db:"lease_id"`
	HQPool     string        `db:"hq_pool"`
	HQStart    int64         `db:"hq_snr_start"`
	HQEnd      int64         `db:"hq_snr_end"`
	ExpiresAt  int64         `db:"expires_at"`
	GrantedAt  int64         `db:"granted_at"`
	ClosedAt   sql.NullInt64 `db:"closed_at"`
	UnusedFrom sql.NullInt64 `db:"unused_from"`
	ReleasedAt sql.NullInt64 `db:"released_at"`
	poolRow
}

func (r heldRow) stats() HeldLeaseStats {
	st := HeldLeaseStats{HeldLease: HeldLease{LeaseID: r.LeaseID, HQPool: r.HQPool, HQSNRStart: uint32(r.HQStart), HQSNREnd: uint32(r.HQEnd), Pool: r.pool(), GrantedAt: micros(r.GrantedAt),
		ExpiresAt: micros(r.ExpiresAt), ClosedAt: nullMicros(r.ClosedAt), ReleasedAt: nullMicros(r.ReleasedAt)}, NextSNR: uint32(r.NextSNR), Free: r.SNREnd + 1 - r.NextSNR}
	if r.ClosedAt.Valid {
		st.Free = 0 // closed: nothing more is handed out
	}
	return st
}

// HeldLeases returns every lease this site holds or held, oldest first,
// with what is left of each.
func (db *DB) HeldLeases(ctx context.Context) ([]HeldLeaseStats, error) {
	var rows []heldRow
	if err := db.r.SelectContext(ctx, &rows, sqlSelectHeld+` ORDER BY h.lease_id`); err != nil {
		return nil, translate(err, "list held leases")
	}
	out := make([]HeldLeaseStats, len(rows))
	for i, r := range rows {
		out[i] = r.stats()
	}
	return out, nil
}

// HeldLeasePool returns the pool to allocate from for stations naming HQ
// pool hqPool: the oldest lease not expired at now with SNRs left for at
// least one device of its TAC. Errors: lease_exhausted (retryable: the
// site has asked, or will ask, HQ for the next block).
func (db *DB) HeldLeasePool(ctx context.Context, hqPool string, now time.Time) (PoolStats, error) {
	var r heldRow
	err := db.r.GetContext(ctx, &r, db.r.Rebind(sqlSelectHeld+` JOIN tacs t ON t.tac = p.tac
		WHERE h.hq_pool = ? AND h.expires_at > ? AND h.closed_at IS NULL AND p.snr_end + 1 - p.next_snr >= t.imeis_per_device ORDER BY h.lease_id LIMIT 1`),
		hqPool, now.UnixMicro())
	if noRows(err) {
		return PoolStats{}, tacerr.Field(tacerr.LeaseExhausted, "pool", "this site holds no unexpired lease of pool %s with SNRs left; it asks headquarters for the next block: retry later", hqPool)
	}
	if err != nil {
		return PoolStats{}, translate(err, "find held lease")
	}
	st := r.stats()
	return PoolStats{Pool: st.Pool, NextSNR: st.NextSNR, Free: st.Free}, nil
}

// SiteOutbox is the store.Sink of a site: it records every event that
// changes an IMEI's fate (SiteEventOf) in site_outbox, in the transaction
// of the change, with the index of the event's audit leaf, for the sync
// worker to ship to HQ with the leaf and its inclusion proof. Register it
// at start-up in site mode, after the audit log (it reads the leaf indexes
// the log assigned: Tx.AuditLeafIndexes).
type SiteOutbox struct{}

var _ Sink = SiteOutbox{}

// Append implements Sink.
func (SiteOutbox) Append(tx *Tx, events []Event) error {
	var leaves []int64
	for i, e := range events {
		ev, ok := SiteEventOf(e)
		if !ok {
			continue
		}
		if leaves == nil {
			var err error
			if leaves, err = tx.AuditLeafIndexes(events); err != nil {
				return err
			}
		}
		ev.LeafIndex = leaves[i]
		b, err := json.Marshal(outboxEvent{Type: ev.Type, Time: ev.Time, RequestID: ev.RequestID, IMEIs: ev.IMEIs,
			DeviceSerial: ev.DeviceSerial, CertSerial: ev.CertSerial, Reason: ev.Reason, PreviousCertSerial: ev.PreviousCertSerial,
			LeafIndex: &ev.LeafIndex, Lease: ev.Lease, UnusedFrom: ev.UnusedFrom})
		if err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "encode site outbox event")
		}
		if _, err := tx.exec(tx.rebind(`INSERT INTO site_outbox (event) VALUES (?)`), string(b)); err != nil {
			return translate(err, "record site outbox event")
		}
	}
	return nil
}

// SiteEventOf returns the form in which a site ships ledger event e to HQ
// (Seq and LeafIndex unset), and whether e travels at all: the events that
// change an IMEI's fate (imei.bound, imei.voided, imei.revoked,
// device.reissued) or a lease's (lease.released, with its lease id and
// first SNR never reserved, so the release mark HQ applies is the one the
// site's signed log holds). It is the one mapping from a ledger event to a
// site event: the site's outbox writes what it returns, and HQ recomputes
// it from the audit leaf a shipped event claims and refuses the batch when
// the two differ, whatever the event's type.
func SiteEventOf(e Event) (PendingSiteEvent, bool) {
	ev := PendingSiteEvent{Type: e.Type, Time: e.Time.UTC().Truncate(time.Microsecond), RequestID: e.RequestID, IMEIs: e.IMEIs, DeviceSerial: e.DeviceSerial,
		CertSerial: e.CertSerial, Reason: e.Reason, PreviousCertSerial: e.Attrs["previous_cert_serial"]}
	switch e.Type {
	case EventIMEIBound, EventIMEIVoided, EventIMEIRevoked, EventDeviceReissued:
	case EventLeaseReleased:
		ev.Lease, _ = strconv.ParseInt(e.Attrs["lease"], 10, 64)
		ev.UnusedFrom = e.Attrs["unused_from"]
	default:
		return PendingSiteEvent{}, false
	}
	return ev, true
}

// outboxEvent is a site_outbox row's event (the JSON of api/wire's
// SiteEvent without its sequence number, which is the row's id, and with
// the index of its audit leaf; rows written before leaf indexes were
// recorded have none).
type outboxEvent struct {
	Type               string    `json:"type"`
	Time               time.Time `json:"time"`
	RequestID          string    `json:"request_id,omitempty"`
	IMEIs              []string  `json:"imeis"`
	DeviceSerial       string    `json:"device_serial,omitempty"`
	CertSerial         string    `json:"cert_serial,omitempty"`
	Reason             string    `json:"reason,omitempty"`
	PreviousCertSerial string    `json:"previous_cert_serial,omitempty"`
	Lease              int64     `json:"lease,omitempty"`
	UnusedFrom         string    `json:"unused_from,omitempty"`
	LeafIndex          *int64    `json:"leaf_index,omitempty"`
}

// PendingSiteEvent is one event of the site outbox not yet acknowledged by
// HQ; Seq is its row id, LeafIndex the index of its leaf in the site's
// audit log (-1 for a row written before leaf indexes were recorded).
type PendingSiteEvent struct {
	Seq                int64
	Type               string
	Time               time.Time
	RequestID          string
	IMEIs              []string
	DeviceSerial       string
	CertSerial         string
	Reason             string
	PreviousCertSerial string
	LeafIndex          int64
	// Lease and UnusedFrom are a lease.released event's: HQ's lease id and
	// its first SNR never reserved (6 digits; "" when none is left).
	Lease      int64
	UnusedFrom string
}

// PendingSiteEvents returns at most limit pending outbox events after
// sequence after, in order.
func (db *DB) PendingSiteEvents(ctx context.Context, after int64, limit int) ([]PendingSiteEvent, error) {
	var rows []struct {
		ID    int64  `db:"id"`
		Event string `db:"event"`
	}
	if err := db.r.SelectContext(ctx, &rows, db.r.Rebind(`SELECT id, event FROM site_outbox WHERE shipped IS NULL AND id > ? ORDER BY id LIMIT ?`),
		after, limit); err != nil {
		return nil, translate(err, "read site outbox")
	}
	out := make([]PendingSiteEvent, len(rows))
	for i, r := range rows {
		var e outboxEvent
		if err := json.Unmarshal([]byte(r.Event), &e); err != nil {
			return nil, tacerr.Wrap(tacerr.LedgerInvariant, err, "site outbox row %d", r.ID)
		}
		out[i] = PendingSiteEvent{Seq: r.ID, Type: e.Type, Time: e.Time.UTC(), RequestID: e.RequestID, IMEIs: e.IMEIs,
			DeviceSerial: e.DeviceSerial, CertSerial: e.CertSerial, Reason: e.Reason, PreviousCertSerial: e.PreviousCertSerial, LeafIndex: -1,
			Lease: e.Lease, UnusedFrom: e.UnusedFrom}
		if e.LeafIndex != nil {
			out[i].LeafIndex = *e.LeafIndex
		}
	}
	return out, nil
}

// MarkSiteEventsShipped records that HQ applied every outbox event up to
// and including seq, and returns how many rows it marked.
func (db *DB) MarkSiteEventsShipped(ctx context.Context, seq int64) (int64, error) {
	var n int64
	err := db.InTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(tx.rebind(`UPDATE site_outbox SET shipped = ? WHERE shipped IS NULL AND id <= ?`), tx.Now().UnixMicro(), seq)
		if err != nil {
			return translate(err, "mark site outbox shipped")
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// SiteOutboxPending counts the events not yet acknowledged by HQ.
func (db *DB) SiteOutboxPending(ctx context.Context) (int64, error) {
	var n int64
	if err := db.r.GetContext(ctx, &n, `SELECT COUNT(*) FROM site_outbox WHERE shipped IS NULL`); err != nil {
		return 0, translate(err, "count site outbox")
	}
	return n, nil
}

// RecordCosigned keeps, in a site's own ledger, the newest checkpoint of
// its audit log that HQ verified and cosigned (cp.Cosigned: the note with
// HQ's witness cosignature; the caller verified it). It lives where HQ
// keeps its view of a site: the sites row named after the site itself,
// whose cp_size never goes down (a trigger). A checkpoint not larger than
// the one kept changes nothing.
func (db *DB) RecordCosigned(ctx context.Context, site string, cp SiteCheckpoint) error {
	return db.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(tx.rebind(`INSERT INTO sites (name, enrolled_at, cp_size, cp_hash, cp_note, cp_cosigned) VALUES (?,?,?,?,?,?)
			ON CONFLICT (name) DO UPDATE SET cp_size = excluded.cp_size, cp_hash = excluded.cp_hash, cp_note = excluded.cp_note,
			cp_cosigned = excluded.cp_cosigned WHERE excluded.cp_size > sites.cp_size`),
			site, tx.Now().UnixMicro(), cp.Size, cp.Hash, cp.Note, cp.Cosigned)
		return translate(err, "record headquarters' cosigned checkpoint")
	})
}

// Cosigned returns the checkpoint RecordCosigned kept for site (size zero
// and no note when none).
func (db *DB) Cosigned(ctx context.Context, site string) (SiteCheckpoint, error) {
	st, err := siteByName(db.r, site)
	if tacerr.Is(err, tacerr.NotFound) {
		return SiteCheckpoint{}, nil
	}
	return st.Checkpoint, err
}

// LeaseAsk returns the request id under which this site asks HQ for its
// next lease of hqPool (store.GrantAskedLease at HQ): the id of an earlier
// request whose lease is not recorded yet (its answer may have been lost
// after HQ granted it: HQ answers the same id with the same lease), else
// a new random one, committed to the ledger before it is returned.
// RecordHeldLease forgets it.
func (db *DB) LeaseAsk(ctx context.Context, hqPool string) (string, error) {
	var id string
	err := db.InTx(ctx, func(tx *Tx) error {
		err := tx.get(&id, tx.rebind(`SELECT request_id FROM lease_asks WHERE hq_pool = ?`), hqPool)
		if err == nil || !noRows(err) {
			return translate(err, "read the lease request")
		}
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "make a lease request id")
		}
		id = "lease-" + hex.EncodeToString(b[:])
		if _, err := tx.exec(tx.rebind(`INSERT INTO lease_asks (hq_pool, request_id, asked_at) VALUES (?, ?, ?)`), hqPool, id, tx.Now().UnixMicro()); err != nil {
			return translate(err, "record the lease request")
		}
		return nil
	})
	return id, err
}

// DropLeaseAsk forgets the request id of hqPool when it is still
// requestID (HQ will not answer it with a lease again: the next request
// takes a new id).
func (db *DB) DropLeaseAsk(ctx context.Context, hqPool, requestID string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(tx.rebind(`DELETE FROM lease_asks WHERE hq_pool = ? AND request_id = ?`), hqPool, requestID)
		return translate(err, "forget the lease request")
	})
}
