package store

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// Reservation kinds.
const (
	KindProvision   = "provision"   // IMEIs for one named device, bound once its certificate is issued
	KindPreallocate = "preallocate" // IMEIs for devices not yet known (label printing), bound later
	KindBench       = "bench"       // benchmark load
)

// MaxDevicesPerReservation bounds one pre-allocation request.
const MaxDevicesPerReservation = 1000

// ReserveRequest asks for IMEIs from one pool.
type ReserveRequest struct {
	RequestID string // the caller's idempotency key, unique forever
	// RequestHash identifies the request's content. A replay of RequestID
	// with the same hash returns the original reservation; with another
	// hash it fails with request_conflict.
	RequestHash  []byte
	Pool         string
	Caller       string // the station or operator identity
	Kind         string // KindProvision, KindPreallocate or KindBench
	DeviceSerial string // KindProvision: the device; it may hold one reservation only
	Devices      int    // how many devices (default 1; more only for KindPreallocate)
	PerDevice    int    // IMEIs per device, 1..5
	Intent       []byte // the issuance intent, opaque to the store, returned on replay
	// Issuance, if set (KindProvision only), is the issuance intent of the
	// device, recorded in the reservation's transaction with the
	// reservation's id and group 0 (the caller's value is not modified).
	Issuance *Issuance
}

func (r *ReserveRequest) validate() error {
	if r.Devices == 0 {
		r.Devices = 1
	}
	switch {
	case strings.TrimSpace(r.RequestID) == "" || len(r.RequestID) > 128:
		return tacerr.Field(tacerr.InvalidInput, "request_id", "must be 1 to 128 characters")
	case r.Pool == "":
		return tacerr.Field(tacerr.InvalidInput, "pool", "is required")
	case r.Caller == "":
		return tacerr.Field(tacerr.InvalidInput, "caller", "is required")
	case r.PerDevice < 1 || r.PerDevice > imei.MaxPerDevice:
		return tacerr.Field(tacerr.InvalidInput, "imei_count", "must be between 1 and %d IMEIs per device, got %d", imei.MaxPerDevice, r.PerDevice)
	case r.Devices < 1 || r.Devices > MaxDevicesPerReservation:
		return tacerr.Field(tacerr.InvalidInput, "count", "must be between 1 and %d devices, got %d", MaxDevicesPerReservation, r.Devices)
	}
	switch r.Kind {
	case KindProvision:
		if r.DeviceSerial == "" {
			return tacerr.Field(tacerr.InvalidInput, "device_serial", "is required to provision a device")
		}
		if r.Devices != 1 {
			return tacerr.Field(tacerr.InvalidInput, "count", "provisioning reserves IMEIs for exactly one device")
		}
	case KindPreallocate, KindBench:
		if r.DeviceSerial != "" && r.Kind == KindPreallocate {
			return tacerr.Field(tacerr.InvalidInput, "device_serial", "pre-allocation reserves IMEIs for devices not known yet: leave it empty")
		}
	default:
		return tacerr.Field(tacerr.InvalidInput, "kind", "unknown reservation kind %q", r.Kind)
	}
	if r.Issuance != nil && r.Kind != KindProvision {
		return tacerr.Field(tacerr.InvalidInput, "kind", "an issuance intent is recorded with a provisioning reservation only")
	}
	if r.RequestHash == nil {
		r.RequestHash = []byte{}
	}
	return nil
}

// Reservation is a committed reservation.
type Reservation struct {
	ID           int64
	RequestID    string
	RequestHash  []byte
	PoolID       int64
	Pool         string
	TAC          uint32
	Caller       string
	Kind         string
	DeviceSerial string
	// Devices holds one IMEI group per device, in SNR order.
	Devices   [][]imei.IMEI
	Intent    []byte
	CreatedAt time.Time
	// Replayed is true when RequestID had already been reserved and this is
	// the original reservation returned again.
	Replayed bool
}

// reserveWork is a Reserve call in a group-commit batch.
type reserveWork struct {
	member
	req ReserveRequest
	res *Reservation
}

// Reserve reserves req.Devices*req.PerDevice IMEIs from the named pool, in
// SNR order, and returns once the reservation is durable. A replay of a
// request id returns the original reservation (Replayed set). Errors:
// pool_not_found, pool_exhausted (nothing reserved; the message says how
// many SNRs remain), request_conflict, device_already_provisioned,
// invalid_input.
func (db *DB) Reserve(ctx context.Context, req ReserveRequest) (*Reservation, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	p := &reserveWork{member: newMember(), req: req}
	db.committer.submit(p)
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		// The reservation may still commit; a replay with the same request
		// id returns it.
		return nil, tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "reservation %s not confirmed before the deadline; retry with the same request_id", req.RequestID)
	}
}

const sqlPoolsForUpdate = `SELECT id, name, tac, snr_end, next_snr FROM pools WHERE name IN (?)`

// advancePools moves the high-water mark of every pool that was locked
// (not claimed in one statement) and handed out SNRs, with one UPDATE ...
// FROM (VALUES ...) that must change each of them (they are locked: a count
// that differs means a pool moved under the batch, which is retried).
func (tx *Tx) advancePools(heads map[string]*poolHead) error {
	var args []any
	n := 0
	for _, h := range heads {
		if h.claimed || h.NextSNR == h.start {
			continue
		}
		args = append(args, h.ID, h.NextSNR, h.start)
		n++
	}
	if n == 0 {
		return nil
	}
	from, args := tx.valuesTable("(CAST(? AS BIGINT),CAST(? AS BIGINT),CAST(? AS BIGINT))", 3, n, "v", args)
	q := `UPDATE pools SET next_snr = v.column2 FROM ` + from + ` WHERE pools.id = v.column1 AND pools.next_snr = v.column3`
	return tx.execCheck(q, args, func(got int64) error {
		if got != int64(n) {
			return tacerr.New(tacerr.Unavailable, "%d of %d pools moved under the batch; retrying", int64(n)-got, n)
		}
		return nil
	}, "advance pools")
}

type poolHead struct {
	ID      int64  `db:"id"`
	Name    string `db:"name"`
	TAC     uint32 `db:"tac"`
	SNREnd  int64  `db:"snr_end"`
	NextSNR int64  `db:"next_snr"`
	start   int64
	claimed bool // the batch's whole need was claimed in one statement
}

const sqlClaimPool = `UPDATE pools SET next_snr = next_snr + ? WHERE name = ? AND next_snr + ? <= snr_end + 1
	RETURNING id, name, tac, snr_end, next_snr`

// claimPools advances each pool by the batch's need when it fits (one
// statement, the row stays locked until commit) and locks the others for a
// request-by-request decision. NextSNR of a head is where assignment starts.
func (tx *Tx) claimPools(needs map[string]int64) (map[string]*poolHead, error) {
	names := make([]string, 0, len(needs))
	for n := range needs {
		names = append(names, n)
	}
	sort.Strings(names) // a fixed order: no deadlocks between replicas
	heads := map[string]*poolHead{}
	slow := map[string]bool{}
	if tx.db.sql.poolsAtOnce && len(names) > 1 {
		// One statement for every pool (SQLite has one writer: no lock
		// order to keep between replicas).
		claimed, err := tx.claimPoolsAtOnce(names, needs)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			if h, ok := claimed[n]; ok {
				heads[n] = h
			} else {
				slow[n] = true
			}
		}
		names = nil
	}
	if !tx.db.sql.poolsAtOnce && len(names) > 1 {
		// One statement to lock every pool, in a fixed order (no
		// deadlocks between replicas), instead of one claim per pool; the
		// batch then assigns SNRs request by request and advances every
		// pool with one statement (step 4 of reserveBatch).
		for _, n := range names {
			slow[n] = true
		}
		names = nil
	}
	for _, n := range names {
		var h poolHead
		err := tx.get(&h, tx.rebind(sqlClaimPool), needs[n], n, needs[n])
		if noRows(err) {
			slow[n] = true
			continue
		}
		if err != nil {
			return nil, translate(err, "claim SNRs of pool "+n)
		}
		h.NextSNR -= needs[n]
		h.start, h.claimed = h.NextSNR, true
		heads[n] = &h
	}
	if len(slow) > 0 {
		locked, err := tx.lockPools(slow)
		if err != nil {
			return nil, err
		}
		for n, h := range locked {
			heads[n] = h
		}
	}
	return heads, nil
}

// claimPoolsAtOnce is sqlClaimPool for several pools in one UPDATE ... FROM
// (VALUES ...) (SQLite). Pools missing from the result were not advanced
// (unknown, or too close to exhaustion for the batch's need).
func (tx *Tx) claimPoolsAtOnce(names []string, needs map[string]int64) (map[string]*poolHead, error) {
	args := make([]any, 0, 2*len(names))
	for _, n := range names {
		args = append(args, n, needs[n])
	}
	q := multiRow(`UPDATE pools SET next_snr = pools.next_snr + v.column2 FROM (VALUES `, "(?,?)", len(names)) +
		`) AS v WHERE pools.name = v.column1 AND pools.next_snr + v.column2 <= pools.snr_end + 1
	RETURNING pools.id, pools.name, pools.tac, pools.snr_end, pools.next_snr`
	var rows []*poolHead
	if err := tx.sel(&rows, q, args...); err != nil {
		return nil, translate(err, "claim SNRs of pools")
	}
	out := make(map[string]*poolHead, len(rows))
	for _, h := range rows {
		h.NextSNR -= needs[h.Name]
		h.start, h.claimed = h.NextSNR, true
		out[h.Name] = h
	}
	return out, nil
}

// reserveBatch runs inside one transaction. Per-request failures are set on
// the work items and do not fail the transaction; database errors do.
// On PostgreSQL bp, if not nil, is read with the batch's reads.
func (tx *Tx) reserveBatch(batch []*reserveWork, bp *bindPools) error {
	for _, p := range batch {
		p.res, p.err = nil, nil
	}
	// 1. Request ids seen before (replays) and duplicates inside the batch.
	first := make(map[string]*reserveWork, len(batch))
	var fresh []*reserveWork
	var dups []*reserveWork
	ids := make([]string, 0, len(batch))
	for _, p := range batch {
		if _, ok := first[p.req.RequestID]; ok {
			dups = append(dups, p)
			continue
		}
		first[p.req.RequestID] = p
		ids = append(ids, p.req.RequestID)
	}
	var reads *reserveReads
	var existing map[string]*Reservation
	var err error
	if tx.db.sql.pipeline {
		// PostgreSQL: steps 1 to 3's reads in one round trip (reserveread.go).
		if reads, err = tx.readReserve(batch, bp); err != nil {
			return err
		}
		existing = reads.replays
	} else if existing, err = tx.reservationsByRequestID(ids); err != nil {
		return err
	}
	for _, p := range batch { // arrival order decides SNR order
		if first[p.req.RequestID] != p {
			continue
		}
		if r, ok := existing[p.req.RequestID]; ok {
			p.res, p.err = replayOf(r, p.req)
			continue
		}
		fresh = append(fresh, p)
	}

	// 2. Devices already provisioned.
	if err := tx.refuseProvisionedDevices(fresh, reads); err != nil {
		return err
	}
	// 3. Pools. The common case takes one statement per pool: advance the
	// high-water mark by what the whole batch needs, if it fits. Otherwise
	// (a pool near exhaustion, or unknown) lock the pool and decide request
	// by request, in arrival order.
	needs := map[string]int64{}
	for _, p := range fresh {
		if p.err == nil {
			needs[p.req.Pool] += int64(p.req.Devices * p.req.PerDevice)
		}
	}
	var heads map[string]*poolHead
	if reads != nil {
		heads = reads.pools
	} else if heads, err = tx.claimPools(needs); err != nil {
		return err
	}
	now := tx.Now().Truncate(time.Microsecond)
	var made []*reserveWork
	for _, p := range fresh {
		if p.err != nil {
			continue
		}
		h, ok := heads[p.req.Pool]
		if !ok {
			p.err = tacerr.Field(tacerr.PoolNotFound, "pool", "pool %q does not exist; `tacline pool list` shows the pools", p.req.Pool)
			continue
		}
		need := int64(p.req.Devices * p.req.PerDevice)
		if left := h.SNREnd + 1 - h.NextSNR; need > left {
			p.err = tacerr.Field(tacerr.PoolExhausted, "pool", "pool %q has %d SNRs left, %d requested; nothing was reserved: create a new pool", h.Name, left, need)
			continue
		}
		r := &Reservation{
			RequestID: p.req.RequestID, RequestHash: p.req.RequestHash, PoolID: h.ID, Pool: h.Name, TAC: h.TAC,
			Caller: p.req.Caller, Kind: p.req.Kind, DeviceSerial: p.req.DeviceSerial,
			Intent: p.req.Intent, CreatedAt: now,
		}
		snr := h.NextSNR
		for d := 0; d < p.req.Devices; d++ {
			group := make([]imei.IMEI, p.req.PerDevice)
			for s := range group {
				group[s], err = imei.New(h.TAC, uint32(snr))
				if err != nil {
					return tacerr.Wrap(tacerr.Internal, err, "pool %s", h.Name)
				}
				snr++
			}
			r.Devices = append(r.Devices, group)
		}
		h.NextSNR = snr
		p.res = r
		made = append(made, p)
	}
	if len(made) == 0 {
		return tx.finishDups(first, dups)
	}
	// 4. Advance the high-water marks of pools locked row by row, all
	// with one statement.
	if err := tx.advancePools(heads); err != nil {
		return err
	}
	// 5. Reservation rows, then IMEI rows.
	if err := tx.insertReservations(made, now, reads); err != nil {
		return err
	}
	if err := tx.insertIMEIs(made, now); err != nil {
		return err
	}
	if err := tx.insertIntents(made); err != nil {
		return err
	}
	var claims []deviceClaim
	var keys []keyClaim
	for _, p := range made {
		if p.req.Kind == KindProvision {
			claims = append(claims, deviceClaim{serial: p.req.DeviceSerial, requestID: p.req.RequestID})
			if is := p.req.Issuance; is != nil {
				keys = append(keys, keyClaim{spkiHash: is.SPKIHash, serial: is.DeviceSerial})
			}
		}
	}
	if err := tx.claimDevices(claims); err != nil {
		return err
	}
	if err := tx.claimKeys(keys); err != nil {
		return err
	}
	// 6. One event per device.
	for _, p := range made {
		for _, g := range p.res.Devices {
			tx.Emit(Event{Type: EventIMEIReserved, Time: now, Actor: p.req.Caller, RequestID: p.req.RequestID,
				Pool: p.res.Pool, TAC: imei.FormatTAC(p.res.TAC), IMEIs: imeiStrings(g), DeviceSerial: p.req.DeviceSerial})
		}
	}
	return tx.finishDups(first, dups)
}

// finishDups gives requests that repeated a request id inside one batch the
// result of the first one (a replay, or a conflict if their content differs).
func (tx *Tx) finishDups(first map[string]*reserveWork, dups []*reserveWork) error {
	for _, p := range dups {
		f := first[p.req.RequestID]
		if f.err != nil {
			p.err = f.err
			continue
		}
		p.res, p.err = replayOf(f.res, p.req)
	}
	return nil
}

func replayOf(r *Reservation, req ReserveRequest) (*Reservation, error) {
	if !bytes.Equal(r.RequestHash, req.RequestHash) {
		return nil, tacerr.Field(tacerr.RequestConflict, "request_id",
			"request id %q was already used for a different request; use a new request id", req.RequestID)
	}
	c := *r
	c.Replayed = true
	return &c, nil
}

func imeiStrings(g []imei.IMEI) []string {
	out := make([]string, len(g))
	for i, v := range g {
		out[i] = v.String()
	}
	return out
}

func (tx *Tx) lockPools(names map[string]bool) (map[string]*poolHead, error) {
	heads := map[string]*poolHead{}
	if len(names) == 0 {
		return heads, nil
	}
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list) // lock in a fixed order: no deadlocks between replicas
	q := sqlPoolsForUpdate + " ORDER BY id" + tx.db.sql.forUpdate
	q, args, err := tx.in(q, list)
	if err != nil {
		return nil, err
	}
	var rows []*poolHead
	if err := tx.sel(&rows, q, args...); err != nil {
		return nil, translate(err, "lock pools")
	}
	for _, h := range rows {
		h.start = h.NextSNR
		heads[h.Name] = h
	}
	return heads, nil
}

// sqlProvisionedDevices finds devices that hold IMEIs not voided (a
// provisioning abandoned by recovery frees the device for a new attempt;
// its voided IMEIs stay voided). A provisioning reservation writes its
// device serial on its IMEIs, so the index imeis_device answers it
// (reservations has no device index since migration 0012). The redundant
// test that device_serial is not empty lets both databases use that
// partial index.
const sqlProvisionedDevices = `SELECT DISTINCT i.device_serial FROM imeis i WHERE i.device_serial IN (?) AND i.device_serial <> ''
	AND i.state <> 'VOIDED'`

func (tx *Tx) refuseProvisionedDevices(fresh []*reserveWork, reads *reserveReads) error {
	var serials []string
	seen := map[string]*reserveWork{}
	for _, p := range fresh {
		if p.req.DeviceSerial == "" {
			continue
		}
		if other, ok := seen[p.req.DeviceSerial]; ok {
			// Two new requests for one device in the same batch: the first wins.
			_ = other
			p.err = tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial",
				"device %q is already being provisioned by request %q; rework goes through reissue", p.req.DeviceSerial, other.req.RequestID)
			continue
		}
		seen[p.req.DeviceSerial] = p
		serials = append(serials, p.req.DeviceSerial)
	}
	if len(serials) == 0 {
		return nil
	}
	var taken []string
	if reads != nil {
		taken = reads.taken // read for every member (readReserve)
	} else {
		q, args, err := tx.in(sqlProvisionedDevices, serials)
		if err != nil {
			return err
		}
		if err := tx.sel(&taken, q, args...); err != nil {
			return translate(err, "look up devices")
		}
	}
	for _, s := range taken {
		p := seen[s]
		if p == nil {
			continue // a replay's device
		}
		p.err = tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial",
			"device %q is already provisioned; rework goes through reissue", s)
	}
	return nil
}

func (tx *Tx) insertReservations(made []*reserveWork, now time.Time, reads *reserveReads) error {
	if reads != nil && len(reads.ids) >= len(made) {
		// PostgreSQL: with the ids taken by the batch's reads, queued with
		// its other writes.
		w := tx.rows(`INSERT INTO reservations (id, request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, intent, created_at) VALUES `,
			"(?,?,?,?,?,?,?,?,?,?,?)", 11, "insert reservations").sized(len(made))
		for i, p := range made {
			p.res.ID = reads.ids[i]
			if err := w.add(p.res.ID, p.req.RequestID, p.req.RequestHash, p.res.PoolID, p.req.Caller, p.req.Kind,
				p.req.DeviceSerial, p.req.Devices, p.req.PerDevice, p.req.Intent, now.UnixMicro()); err != nil {
				return err
			}
		}
		return w.flush()
	}
	const cols = 10
	args := make([]any, 0, len(made)*cols)
	for _, p := range made {
		args = append(args, p.req.RequestID, p.req.RequestHash, p.res.PoolID, p.req.Caller, p.req.Kind,
			p.req.DeviceSerial, p.req.Devices, p.req.PerDevice, p.req.Intent, now.UnixMicro())
	}
	q, args := tx.multiRowInsert(`INSERT INTO reservations (request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, intent, created_at) VALUES `,
		"(?,?,?,?,?,?,?,?,?,?)", cols, len(made), args)
	q += " RETURNING id, request_id"
	rows, err := tx.queryx(tx.rebind(q), args...)
	if err != nil {
		return translate(err, "insert reservations")
	}
	defer rows.Close()
	byID := make(map[string]*Reservation, len(made))
	for _, p := range made {
		byID[p.req.RequestID] = p.res
	}
	n := 0
	for rows.Next() {
		var id int64
		var rid string
		if err := rows.Scan(&id, &rid); err != nil {
			return translate(err, "insert reservations")
		}
		byID[rid].ID = id
		n++
	}
	if err := rows.Err(); err != nil {
		return translate(err, "insert reservations")
	}
	if n != len(made) {
		return tacerr.New(tacerr.Internal, "inserted %d reservations, expected %d", n, len(made))
	}
	return nil
}

func (tx *Tx) insertIMEIs(made []*reserveWork, now time.Time) error {
	n := 0
	for _, p := range made {
		for _, group := range p.res.Devices {
			n += len(group)
		}
	}
	w := tx.rows(`INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reserved_at, device_serial) VALUES `,
		"(?,?,?,?,?,'RESERVED',?,?)", 7, "insert IMEIs").sized(n)
	for _, p := range made {
		for g, group := range p.res.Devices {
			for s, v := range group {
				if err := w.add(int64(v.Uint64()), p.res.PoolID, p.res.ID, g, s, now.UnixMicro(), p.req.DeviceSerial); err != nil {
					return err
				}
			}
		}
	}
	return w.flush()
}
