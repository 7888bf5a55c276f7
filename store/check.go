package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// CheckReport is the result of Check.
type CheckReport struct {
	Pools int   `json:"pools"`
	IMEIs int64 `json:"imeis"`
	// Leases counts the leases granted to sites; LeasedUnused the SNRs of
	// leases still held that have no row yet (the site has not reported
	// them bound or voided).
	Leases       int   `json:"leases"`
	LeasedUnused int64 `json:"leased_unused"`
	// ReleasedUnleased counts the SNRs that sites' proven releases handed
	// back to their pools and that no lease took again yet.
	ReleasedUnleased int64    `json:"released_unleased"`
	Violations       []string `json:"violations"` // empty when the ledger is sound
}

// OK reports whether no invariant was violated.
func (r CheckReport) OK() bool { return len(r.Violations) == 0 }

// maxViolations bounds the report; the first one is what matters.
const maxViolations = 100

// Check verifies the ledger's invariants in one consistent snapshot:
//   - every SNR between a pool's start and its high-water mark has exactly
//     one ledger row, and no row lies outside that range or outside its TAC;
//   - every reservation holds exactly devices*per_device IMEIs;
//   - no device serial holds live (not VOIDED) IMEIs from two reservations;
//   - every BOUND or REVOKED IMEI names its device and certificate;
//   - every device (one provisioned here) holds its group's IMEIs in its
//     own state, BOUND, VOIDED or REVOKED, recorded for it;
//   - every lease lies in its pool below the high-water mark, and every row
//     inside a lease was recorded for the lease's site; an SNR of a lease
//     still held may have no row (leased, not yet used), one of a returned
//     lease may not, except the SNRs its site's release handed back: those
//     lie in leases granted from them since, or have no row (released, not
//     yet leased again);
//   - no SNR lies in two leases (a released lease covers its SNRs below
//     the handed-back ones), and the leases cut from a released lease
//     cover exactly the handed-back SNRs it re-leased.
//
// (An IMEI cannot appear twice: the 14-digit IMEI is unique, the primary
// key on PostgreSQL and the unique index imeis_imei14 on SQLite.)
func (db *DB) Check(ctx context.Context) (CheckReport, error) {
	var rep CheckReport
	add := func(format string, args ...any) {
		if len(rep.Violations) < maxViolations {
			rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
		}
	}
	err := db.readTx(ctx, func(tx *Tx) error {
		var pools []poolRow
		if err := tx.sel(&pools, sqlSelectPools+" ORDER BY tac, snr_start"); err != nil {
			return translate(err, "list pools")
		}
		rep.Pools = len(pools)
		leases, err := leasesOf(txQuerier{tx}, "")
		if err != nil {
			return err
		}
		rep.Leases = len(leases)
		skips, err := tx.checkLeases(leases, &rep, add)
		if err != nil {
			return err
		}
		// Every row in a pool's allocated range must belong to the pool,
		// and there must be one row per SNR (an SNR of a lease still held
		// may have none). One pass over imeis counts each pool's rows and
		// finds its lowest and highest IMEI: when every pool's rows lie in
		// its own allocated range and as many as the range needs, and no
		// two ranges overlap, no range holds a row of another pool or
		// misses one, and no row lies outside. Otherwise each pool's range
		// is walked on the primary key to name what is wrong: rows outside
		// every allocated range are found by comparing the total with the
		// rows counted in ranges (pools never overlap).
		type poolRows struct {
			Pool int64 `db:"pool_id"`
			N    int64 `db:"n"`
			Lo   int64 `db:"lo"`
			Hi   int64 `db:"hi"`
		}
		var held []poolRows
		if err := tx.sel(&held, sqlCheckPoolRows); err != nil {
			return translate(err, "count pool rows")
		}
		byPool := map[int64][]leaseRow{}
		for _, l := range leases {
			byPool[l.PoolID] = append(byPool[l.PoolID], l)
		}
		unusedIn := func(p poolRow) int64 {
			var n int64
			for _, sp := range skips[p.ID] {
				n += sp.hi - sp.lo + 1 - sp.rows
			}
			return n
		}
		heldBy := map[int64]poolRows{}
		for _, h := range held {
			rep.IMEIs += h.N
			heldBy[h.Pool] = h
		}
		sound := true
		for i, p := range pools {
			h, ok := heldBy[p.ID]
			delete(heldBy, p.ID)
			base := p.TAC * imei.SNRsPerTAC
			if h.N != p.NextSNR-p.SNRStart-unusedIn(p) || ok && (h.Lo < base+p.SNRStart || h.Hi >= base+p.NextSNR) ||
				i > 0 && pools[i-1].TAC == p.TAC && pools[i-1].NextSNR > p.SNRStart {
				sound = false
			}
		}
		if len(heldBy) > 0 { // rows of no pool listed
			sound = false
		}
		var inRanges int64
		for _, p := range pools {
			for _, l := range byPool[p.ID] {
				if l.SNRStart < p.SNRStart || l.SNREnd >= p.NextSNR {
					add("lease %d (%06d-%06d) lies outside pool %s's allocated range %06d-%06d", l.ID, l.SNRStart, l.SNREnd, p.Name, p.SNRStart, p.NextSNR-1)
				}
			}
			if sound {
				continue
			}
			unused := unusedIn(p)
			base := p.TAC * imei.SNRsPerTAC
			lo, hi := base+p.SNRStart, base+p.NextSNR
			var a struct {
				N       int64 `db:"n"`
				Foreign int64 `db:"foreign_rows"`
			}
			if err := tx.get(&a, tx.rebind(`SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN pool_id = ? THEN 0 ELSE 1 END), 0) AS foreign_rows
				FROM imeis WHERE imei14 >= ? AND imei14 < ?`), p.ID, lo, hi); err != nil {
				return translate(err, "count pool rows")
			}
			inRanges += a.N
			if a.N == p.NextSNR-p.SNRStart-unused && a.Foreign == 0 {
				continue
			}
			if a.Foreign > 0 {
				var f struct {
					IMEI int64  `db:"imei14"`
					Pool string `db:"name"`
				}
				if err := tx.get(&f, tx.rebind(`SELECT i.imei14, p.name FROM imeis i JOIN pools p ON p.id = i.pool_id
					WHERE i.imei14 >= ? AND i.imei14 < ? AND i.pool_id <> ? ORDER BY i.imei14 LIMIT 1`), lo, hi, p.ID); err != nil {
					return translate(err, "find a foreign row in a pool's range")
				}
				add("pool %s: IMEI %s in the pool's allocated range is recorded in pool %s", p.Name, fmtIMEI(f.IMEI), f.Pool)
				continue
			}
			// Find the first missing SNR by walking the range.
			rows, err := tx.queryx(tx.rebind(`SELECT imei14 FROM imeis WHERE imei14 >= ? AND imei14 < ? ORDER BY imei14`), lo, hi)
			if err != nil {
				return translate(err, "walk pool rows")
			}
			expect := lo
			found := false
			for rows.Next() && !found {
				var v int64
				if err := rows.Scan(&v); err != nil {
					rows.Close()
					return translate(err, "walk pool rows")
				}
				if miss := firstUnheld(skips[p.ID], expect, v); v > expect && miss >= 0 {
					add("pool %s: SNR %06d has no ledger row (below the high-water mark %06d)", p.Name, miss-base, p.NextSNR)
					found = true
				}
				expect = v + 1
			}
			rows.Close()
			if miss := firstUnheld(skips[p.ID], expect, hi); !found && miss >= 0 {
				add("pool %s: SNR %06d has no ledger row (below the high-water mark %06d)", p.Name, miss-base, p.NextSNR)
			}
		}
		if !sound && rep.IMEIs != inRanges {
			// A row outside its own pool's allocated range (below its start,
			// at or above its high-water mark, or in another TAC). Only a
			// broken ledger gets here, so this scan is no everyday cost.
			var o struct {
				IMEI     int64  `db:"imei14"`
				Pool     string `db:"name"`
				SNRStart int64  `db:"snr_start"`
				NextSNR  int64  `db:"next_snr"`
			}
			err := tx.get(&o, tx.rebind(`SELECT i.imei14, p.name, p.snr_start, p.next_snr FROM imeis i JOIN pools p ON p.id = i.pool_id
				WHERE i.imei14 < CAST(p.tac AS BIGINT) * ? + p.snr_start OR i.imei14 >= CAST(p.tac AS BIGINT) * ? + p.next_snr
				ORDER BY i.imei14 LIMIT 1`), int64(imei.SNRsPerTAC), int64(imei.SNRsPerTAC))
			if err != nil {
				return translate(err, "find a row outside its pool's range")
			}
			add("pool %s: IMEI %s lies outside the pool's allocated range %06d-%06d", o.Pool, fmtIMEI(o.IMEI), o.SNRStart, o.NextSNR-1)
		}
		type bad struct {
			Key string `db:"k"`
			N   int64  `db:"n"`
		}
		var bads []bad
		if err := tx.sel(&bads, sqlCheckReservations); err != nil {
			return translate(err, "check reservations")
		}
		for _, b := range bads {
			add("reservation %s holds %d IMEIs, not devices*per_device", b.Key, b.N)
		}
		bads = nil
		if err := tx.sel(&bads, sqlCheckDeviceSerials); err != nil {
			return translate(err, "check devices")
		}
		for _, b := range bads {
			add("device %s holds IMEIs from %d reservations", b.Key, b.N)
		}
		var unbound []int64
		if err := tx.sel(&unbound, sqlCheckUnbound); err != nil {
			return translate(err, "check bound IMEIs")
		}
		for _, v := range unbound {
			add("IMEI %s is bound without a device serial or certificate serial", fmtIMEI(v))
		}
		var apart []struct {
			Serial string `db:"serial"`
			State  string `db:"state"`
			IMEI   int64  `db:"imei14"`
			IState string `db:"istate"`
			IDev   string `db:"idev"`
		}
		if err := tx.sel(&apart, sqlCheckDevices); err != nil {
			return translate(err, "check devices against their IMEIs")
		}
		for _, a := range apart {
			add("device %s is %s, but its IMEI %s is %s (recorded for device %q)", a.Serial, a.State, fmtIMEI(a.IMEI), a.IState, a.IDev)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	return rep, nil
}

// The check's statements that read whole tables. Each finds violations
// that a sound ledger does not have and returns the first ones in an
// order, and each must read its tables in one pass in their stored order
// (or an index's in step with it): a plan that serves the order from an
// index over another key reads the rows of 10^7 devices one random page at
// a time (docs/benchmarks.md "Session 20 (checkspeed)": `ledger check`
// took 375 s on a PostgreSQL ledger of 10^7 devices). TestCheckPlans
// holds SQLite's plans.
const (
	// sqlCheckPoolRows: each pool's rows and their lowest and highest
	// IMEI, one pass over imeis (Check walks the pools' ranges on the
	// primary key only when these do not add up).
	sqlCheckPoolRows = `SELECT pool_id, COUNT(*) AS n, MIN(imei14) AS lo, MAX(imei14) AS hi FROM imeis GROUP BY pool_id`
	// sqlCheckReservations: every reservation holds devices*per_device
	// IMEIs. Grouped by the primary key alone (the other columns depend
	// on it), so that SQLite reads reservations in id order, the order of
	// the imeis_reservation probes, and needs no sort; grouped by
	// request_id too, it walked the request_id index and fetched each
	// reservation from there. PostgreSQL merges the two in id order.
	sqlCheckReservations = `SELECT r.request_id AS k, COUNT(i.reservation_id) AS n FROM reservations r LEFT JOIN imeis i ON i.reservation_id = r.id
		GROUP BY r.id HAVING COUNT(i.reservation_id) <> r.devices * r.per_device ORDER BY r.id LIMIT 100`
	// sqlCheckDeviceSerials: no device serial holds live IMEIs from two
	// reservations. "length(device_serial) > 0" (device_serial <> '')
	// keeps the partial index imeis_device (WHERE device_serial <> '') out
	// of the plan: both planners walked it to group by serial without a
	// sort, fetching the IMEI rows in serial order, which is no order of
	// the table. The table is read in order and sorted instead.
	sqlCheckDeviceSerials = `SELECT device_serial AS k, COUNT(DISTINCT reservation_id) AS n FROM imeis
		WHERE length(device_serial) > 0 AND state <> 'VOIDED'
		GROUP BY device_serial HAVING COUNT(DISTINCT reservation_id) > 1 ORDER BY device_serial LIMIT 100`
	// sqlCheckUnbound: every BOUND or REVOKED IMEI names its device and
	// certificate. The violations are found in a materialized CTE, planned
	// without the ORDER BY ... LIMIT (SQLite walked imeis_imei14 for that
	// order and fetched every row from there), and sorted afterwards.
	sqlCheckUnbound = `WITH bad AS MATERIALIZED (
		SELECT imei14 FROM imeis WHERE state IN ('BOUND', 'REVOKED') AND (device_serial = '' OR cert_serial = ''))
		SELECT imei14 FROM bad ORDER BY imei14 LIMIT 100`
	// sqlCheckDevices: every device holds its group's IMEIs in its own
	// state, recorded for it. As sqlCheckUnbound: with the ORDER BY ...
	// LIMIT in the join's plan, PostgreSQL walked devices in serial order
	// (its primary key) and probed imeis once per device. Without it
	// PostgreSQL hashes devices and reads imeis in order; SQLite reads
	// imeis in order and probes devices by (reservation_id, grp).
	sqlCheckDevices = `WITH apart AS MATERIALIZED (
		SELECT d.serial, d.state, i.imei14, i.state AS istate, i.device_serial AS idev
		FROM devices d JOIN imeis i ON i.reservation_id = d.reservation_id AND i.grp = d.grp
		WHERE i.state <> d.state OR i.device_serial <> d.serial)
		SELECT serial, state, imei14, istate, idev FROM apart ORDER BY serial, imei14 LIMIT 100`
)

// span is a range of 14-digit IMEIs whose SNRs need no ledger row (a
// lease still held, or SNRs a release handed back and not yet leased
// again), with the rows it holds.
type span struct{ lo, hi, rows int64 }

// checkLeases checks the leases' rules (see Check), counts their unused
// SNRs into rep and returns, per pool id, the spans whose SNRs need no
// ledger row, in ascending order.
func (tx *Tx) checkLeases(leases []leaseRow, rep *CheckReport, add func(string, ...any)) (map[int64][]span, error) {
	count := func(lo, hi int64) (int64, error) {
		var n int64
		if err := tx.get(&n, tx.rebind(sqlRowsIn), lo, hi); err != nil {
			return 0, translate(err, "count lease rows")
		}
		return n, nil
	}
	skips := map[int64][]span{}
	type owned struct {
		span
		what string
	}
	var all []owned
	relet := map[int64]int64{} // SNRs cut from each released lease
	for _, l := range leases {
		if l.usedHi() >= l.lo() {
			var stray int64
			if err := tx.get(&stray, tx.rebind(`SELECT COUNT(*) FROM imeis i JOIN reservations r ON r.id = i.reservation_id
				WHERE i.imei14 BETWEEN ? AND ? AND r.caller <> ?`), l.lo(), l.usedHi(), SiteCaller(l.Site)); err != nil {
				return nil, translate(err, "check lease rows")
			}
			if stray > 0 {
				add("lease %d of site %s: %d rows inside it were not recorded for the site", l.ID, l.Site, stray)
			}
			all = append(all, owned{span{lo: l.lo(), hi: l.usedHi()}, fmt.Sprintf("lease %d", l.ID)})
		}
		if l.ReletOf.Valid {
			relet[l.ReletOf.Int64] += l.SNREnd - l.SNRStart + 1
		}
		sp, ok := l.rowless()
		if !ok {
			continue
		}
		n, err := count(sp.lo, sp.hi)
		if err != nil {
			return nil, err
		}
		sp.rows = n
		skips[l.PoolID] = append(skips[l.PoolID], sp)
		if !l.ReturnedAt.Valid {
			rep.LeasedUnused += sp.hi - sp.lo + 1 - n
			continue
		}
		if n > 0 {
			add("lease %d: %d of the SNRs its site's release handed back (from %06d) have ledger rows", l.ID, n, l.ReletNext.Int64)
		}
		rep.ReleasedUnleased += sp.hi - sp.lo + 1
		all = append(all, owned{sp, fmt.Sprintf("the SNRs lease %d handed back", l.ID)})
	}
	for _, l := range leases {
		if l.ReleasedFrom.Valid && relet[l.ID] != l.ReletNext.Int64-l.ReleasedFrom.Int64 {
			add("lease %d: %d SNRs of it were re-leased, but leases cut from it hold %d", l.ID, l.ReletNext.Int64-l.ReleasedFrom.Int64, relet[l.ID])
		}
	}
	slices.SortFunc(all, func(a, b owned) int { return cmp.Compare(a.lo, b.lo) })
	for i := 1; i < len(all); i++ {
		if all[i].lo <= all[i-1].hi {
			add("IMEI %s lies in %s and in %s", fmtIMEI(all[i].lo), all[i-1].what, all[i].what)
		}
	}
	for _, sp := range skips {
		slices.SortFunc(sp, func(a, b span) int { return cmp.Compare(a.lo, b.lo) })
	}
	return skips, nil
}

// firstUnheld returns the first 14-digit IMEI in [from, to) that lies in
// none of the ascending spans sp (an SNR that must have a row), or -1.
func firstUnheld(sp []span, from, to int64) int64 {
	for v := from; v < to; {
		next := v
		for _, s := range sp {
			if s.lo <= v && v <= s.hi {
				next = s.hi + 1
				break
			}
		}
		if next == v {
			return v
		}
		v = next
	}
	return -1
}

func fmtIMEI(v int64) string {
	m, err := imei.FromUint64(uint64(v))
	if err != nil {
		return fmt.Sprintf("%014d", v)
	}
	return m.String()
}

// ErrViolation wraps a failed check for callers that want an error.
func (r CheckReport) Err() error {
	if r.OK() {
		return nil
	}
	return tacerr.New(tacerr.LedgerInvariant, "%s", r.Violations[0])
}
