package store

import (
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
)

// Pool usage counts whose cost does not grow with the ledger (issue 14).
// The ledger keeps one row per SNR below each pool's high-water mark
// (Check proves it), except the SNRs a lease leaves without rows
// (rowless), and only a few rows are not BOUND: the RESERVED ones (requests
// in flight, pre-allocations; the partial index imeis_reserved) and the
// VOIDED and REVOKED ones (imeis_retired, migration 0018). So for a pool
//
//	rows     = next_snr - snr_start - (rowless SNRs of its leases)
//	reserved = its rows in imeis_reserved
//	voided, revoked from imeis_retired
//	bound    = rows - reserved - voided - revoked
//
// read in one snapshot: O(pools + leases + reserved + voided + revoked rows +
// the rows of leases still held), never a read of a BOUND row outside a
// lease.

const (
	// The RESERVED rows by pool, through imeis_reserved (reserved_at IS
	// NOT NULL is always true; it makes PostgreSQL's predicate of the index,
	// migration 0016, implied).
	sqlReservedByPool = `SELECT pool_id, state, COUNT(*) AS n FROM imeis
WHERE state = 'RESERVED' AND reserved_at IS NOT NULL GROUP BY pool_id, state`
	// The VOIDED and REVOKED rows by pool, from imeis_retired alone.
	sqlRetiredByPool = `SELECT pool_id, state, COUNT(*) AS n FROM imeis
WHERE state IN ('VOIDED', 'REVOKED') GROUP BY pool_id, state`
	sqlRowsIn = `SELECT COUNT(*) FROM imeis WHERE imei14 BETWEEN ? AND ?`
	// A range's RESERVED rows (imeis_reserved: the unary + keeps both
	// planners off the IMEI's index, a read of the whole range), VOIDED
	// and REVOKED rows (imeis_retired) by state.
	sqlReservedIn = `SELECT state, COUNT(*) AS n FROM imeis
WHERE state = 'RESERVED' AND reserved_at IS NOT NULL AND +imei14 BETWEEN ? AND ? GROUP BY state`
	sqlRetiredIn = `SELECT state, COUNT(*) AS n FROM imeis
WHERE pool_id = ? AND state IN ('VOIDED', 'REVOKED') AND imei14 BETWEEN ? AND ? GROUP BY state`
)

// rowless returns the 14-digit IMEIs of lease r that may have no ledger
// row: the whole lease while it is held (its site has not reported every
// SNR), or, once returned, the SNRs its site's release handed back that no
// lease took again. ok is false when every SNR of r has a row.
func (r leaseRow) rowless() (sp span, ok bool) {
	switch {
	case !r.ReturnedAt.Valid:
		return span{lo: r.lo(), hi: r.hi()}, true
	case r.ReletNext.Valid && r.ReletNext.Int64 <= r.SNREnd:
		return span{lo: r.TAC*imei.SNRsPerTAC + r.ReletNext.Int64, hi: r.hi()}, true
	}
	return span{}, false
}

// poolUsage returns the IMEI rows of each of pools by state, keyed by pool
// id, derived as the comment above says.
func (tx *Tx) poolUsage(pools []poolRow) (map[int64]stateCounts, error) {
	out := make(map[int64]stateCounts, len(pools))
	if len(pools) == 0 {
		return out, nil
	}
	type count struct {
		PoolID int64           `db:"pool_id"`
		State  lifecycle.State `db:"state"`
		N      int64           `db:"n"`
	}
	var cs, retired []count
	if err := tx.sel(&cs, sqlReservedByPool); err != nil {
		return nil, translate(err, "count reserved IMEIs")
	}
	if err := tx.sel(&retired, sqlRetiredByPool); err != nil {
		return nil, translate(err, "count voided and revoked IMEIs")
	}
	for _, c := range append(cs, retired...) {
		u := out[c.PoolID]
		u.set(c.State, c.N)
		out[c.PoolID] = u
	}
	rows := make(map[int64]int64, len(pools))
	for _, p := range pools {
		rows[p.ID] = p.NextSNR - p.SNRStart
	}
	leases, err := leasesOf(txQuerier{tx}, "")
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		sp, ok := l.rowless()
		if _, mine := rows[l.PoolID]; !ok || !mine {
			continue
		}
		var n int64
		if err := tx.get(&n, tx.rebind(sqlRowsIn), sp.lo, sp.hi); err != nil {
			return nil, translate(err, "count lease rows")
		}
		rows[l.PoolID] -= sp.hi - sp.lo + 1 - n
	}
	for _, p := range pools {
		u := out[p.ID]
		u.Bound = rows[p.ID] - u.Reserved - u.Voided - u.Revoked
		out[p.ID] = u
	}
	return out, nil
}

// leaseUsage returns the rows of lease r's IMEIs that are still the
// lease's (below the SNRs its release handed back) by state, and how many
// of them have no row. A lease still held is counted row by row (its site
// is reporting it: it is in flight); a returned one has a row for each of
// them (Check proves it), so only its RESERVED, VOIDED and REVOKED rows are
// read, from their partial indexes, and BOUND is the rest.
func (tx *Tx) leaseUsage(r leaseRow) (c stateCounts, unused int64, err error) {
	lo, hi := r.lo(), r.usedHi()
	if hi < lo {
		return c, 0, nil
	}
	if !r.ReturnedAt.Valid {
		c, err = countStates(txQuerier{tx}, lo, hi, "count lease rows")
		return c, hi - lo + 1 - c.total(), err
	}
	type count struct {
		State lifecycle.State `db:"state"`
		N     int64           `db:"n"`
	}
	var cs, retired []count
	if err := tx.sel(&cs, tx.rebind(sqlReservedIn), lo, hi); err != nil {
		return c, 0, translate(err, "count a lease's reserved IMEIs")
	}
	if err := tx.sel(&retired, tx.rebind(sqlRetiredIn), r.PoolID, lo, hi); err != nil {
		return c, 0, translate(err, "count a lease's voided and revoked IMEIs")
	}
	for _, x := range append(cs, retired...) {
		c.set(x.State, x.N)
	}
	c.Bound = hi - lo + 1 - c.Reserved - c.Voided - c.Revoked
	return c, 0, nil
}
