package store

import (
	"database/sql"
	"sort"

	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/tacerr"
)

// On PostgreSQL a reservation batch makes its three reads (request ids
// seen before, devices already provisioned, its pools locked) in one round
// trip instead of three: none depends on another's answer. The devices
// and pools of every member are read, replays' included (their answers
// are not used); every pool of the batch is locked in id order, as
// lockPools locks them (no deadlocks between replicas), and advanced after
// the batch assigned its SNRs (advancePools), so a single pool too goes
// through the lock rather than a claim (sqlClaimPool), which needed the
// batch's need and so the first two answers.
type reserveReads struct {
	replays map[string]*Reservation
	taken   []string
	pools   map[string]*poolHead
	// ids are reservation ids taken from the table's sequence, one per
	// request id of the batch (those of replays and refusals stay unused,
	// as ids of rolled-back inserts do): the reservations are inserted
	// with them, in the round trip of the batch's other writes, instead of
	// an INSERT ... RETURNING id in a round trip of its own that the IMEI
	// and intent rows then had to wait for.
	ids []int64
}

// The reads of a PostgreSQL batch look their rows up with one index probe
// per key (a LATERAL subquery with LIMIT 1) rather than a scan with
// = ANY(?): pgx keeps each statement prepared on its connection, and
// PostgreSQL keeps the plan it made for it once it found that plan cheap,
// so a plan made while the table was small (a sequential scan) was kept as
// the ledger grew (until an ANALYZE, which a server without autovacuum
// never runs). A probe per key is the cheaper plan at any size.
const (
	sqlReplaysPG = `SELECT r.id, r.request_id, r.request_hash, r.pool_id, p.name AS pool, p.tac, r.caller, r.kind,
	r.device_serial, r.devices, r.per_device, r.intent, r.created_at
	FROM unnest(?::text[]) AS k(id) CROSS JOIN LATERAL (SELECT * FROM reservations WHERE request_id = k.id LIMIT 1) r
	JOIN pools p ON p.id = r.pool_id`
	// sqlProvisionedDevices, probed per serial.
	sqlProvisionedDevicesPG = `SELECT k.s FROM unnest(?::text[]) AS k(s) CROSS JOIN LATERAL
	(SELECT 1 FROM imeis i WHERE i.device_serial = k.s AND i.device_serial <> '' AND i.state <> 'VOIDED' LIMIT 1) i`
	sqlReservationIDs = `WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('reservations', 'id')::regclass AS seq)
	SELECT nextval(s.seq) FROM s, generate_series(1, ?)`
)

// pipedSel is one query of selAll and how its rows are read.
type pipedSel struct {
	query string
	args  []any
	scan  func(rows rowsIter) error
}

// readReserve makes reserveBatch's three reads and takes its reservation
// ids in one round trip (PostgreSQL, dialect pipeline), with the read of
// the batch's bindings (bp, when it has any).
func (tx *Tx) readReserve(batch []*reserveWork, bp *bindPools) (*reserveReads, error) {
	ids := make([]string, 0, len(batch))
	var serials []string
	seenID, seenSerial, seenPool := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var pools []string
	for _, p := range batch {
		if !seenID[p.req.RequestID] {
			seenID[p.req.RequestID] = true
			ids = append(ids, p.req.RequestID)
		}
		if s := p.req.DeviceSerial; s != "" && !seenSerial[s] {
			seenSerial[s] = true
			serials = append(serials, s)
		}
		if !seenPool[p.req.Pool] {
			seenPool[p.req.Pool] = true
			pools = append(pools, p.req.Pool)
		}
	}
	sort.Strings(pools)
	var rr []reservationRow
	var heads []*poolHead
	out := &reserveReads{replays: map[string]*Reservation{}, pools: map[string]*poolHead{}}
	var sels []pipedSel
	add := func(query string, list []string, scan func(rows rowsIter) error) error {
		q, args, err := tx.in(query, list)
		if err != nil {
			return err
		}
		sels = append(sels, pipedSel{query: q, args: args, scan: scan})
		return nil
	}
	sels = append(sels, pipedSel{query: tx.rebind(sqlReplaysPG), args: []any{ids}, scan: func(rows rowsIter) error {
		return sqlx.StructScan(rows.(sqlxRows), &rr)
	}})
	if len(serials) > 0 {
		sels = append(sels, pipedSel{query: tx.rebind(sqlProvisionedDevicesPG), args: []any{serials}, scan: scanColumn(&out.taken)})
	}
	if err := add(sqlPoolsForUpdate+" ORDER BY id"+tx.db.sql.forUpdate, pools, func(rows rowsIter) error {
		return sqlx.StructScan(rows.(sqlxRows), &heads)
	}); err != nil {
		return nil, err
	}
	sels = append(sels, pipedSel{query: tx.rebind(sqlReservationIDs), args: []any{len(ids)}, scan: scanColumn(&out.ids)})
	if bp != nil {
		sels = append(sels, bp.sel(tx))
	}
	if err := tx.selAll(sels); err != nil {
		return nil, translate(err, "look up reservations, devices and pools")
	}
	if len(out.ids) != len(ids) {
		return nil, tacerr.New(tacerr.Internal, "took %d reservation ids for %d requests", len(out.ids), len(ids))
	}
	for _, row := range rr {
		r, err := tx.loadReservation(row)
		if err != nil {
			return nil, err
		}
		out.replays[row.RequestID] = r
	}
	for _, h := range heads {
		h.start = h.NextSNR
		out.pools[h.Name] = h
	}
	return out, nil
}

// scanColumn appends each row's one column to dst.
func scanColumn[T any](dst *[]T) func(rows rowsIter) error {
	return func(rows rowsIter) error {
		for rows.Next() {
			var v T
			if err := rows.Scan(&v); err != nil {
				return err
			}
			*dst = append(*dst, v)
		}
		return rows.Err()
	}
}

// sqlxRows is what sqlx.StructScan reads.
type sqlxRows interface {
	rowsIter
	Columns() ([]string, error)
}

// bindPools is bindBatch's read of the pool (and the catalogue's names of
// its TAC) of each binding, by the binding's first IMEI. On PostgreSQL it
// travels in the batch's first round trip (with the reservations' reads,
// or with BEGIN), one primary-key probe per IMEI: the IMEIs were reserved
// by an earlier transaction and their pool never changes.
type bindPools struct {
	firsts []int64
	pools  map[int64]string
	read   bool
}

func newBindPools(bs []*Binding) *bindPools {
	bp := &bindPools{firsts: make([]int64, len(bs)), pools: make(map[int64]string, len(bs))}
	for i, b := range bs {
		bp.firsts[i] = int64(b.IMEIs[0].Uint64())
	}
	return bp
}

const (
	sqlBindPools = `SELECT i.imei14, p.name, p.tac, t.brand, t.model_name FROM imeis i JOIN pools p ON p.id = i.pool_id
		LEFT JOIN tacs t ON t.tac = p.tac WHERE i.imei14 IN (?)`
	sqlBindPoolsPG = `SELECT k.imei14, p.name, p.tac, t.brand, t.model_name FROM unnest(?::bigint[]) AS k(imei14)
	CROSS JOIN LATERAL (SELECT pool_id FROM imeis WHERE imei14 = k.imei14 LIMIT 1) i
	JOIN pools p ON p.id = i.pool_id LEFT JOIN tacs t ON t.tac = p.tac`
)

// sel is the read (PostgreSQL's form); its rows fill bp.pools and tx's
// TAC names.
func (bp *bindPools) sel(tx *Tx) pipedSel {
	bp.read = true
	return pipedSel{query: tx.rebind(sqlBindPoolsPG), args: []any{bp.firsts}, scan: func(rows rowsIter) error { return bp.scan(tx, rows) }}
}

func (bp *bindPools) scan(tx *Tx, rows rowsIter) error {
	for rows.Next() {
		var k, tac int64
		var name string
		var brand, model sql.NullString
		if err := rows.Scan(&k, &name, &tac, &brand, &model); err != nil {
			return err
		}
		bp.pools[k] = name
		if brand.Valid && model.Valid {
			tx.knowTACName(uint32(tac), TACName{Brand: brand.String, Model: model.String})
		}
	}
	return rows.Err()
}
