package store

import (
	"context"
	"strconv"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// HeldLeaseRelease says what ReleaseHeldLease did.
type HeldLeaseRelease struct {
	LeaseID int64
	// UnusedFrom is the lease's first SNR never reserved (its pool's
	// high-water mark when it was closed); Unused how many SNRs from it to
	// the lease's end go back to HQ.
	UnusedFrom uint32
	Unused     int64
	// InFlight counts the lease's reservations still RESERVED: while there
	// are any, the pool stays closed and lease.released is not yet written
	// (release again once they are bound or voided).
	InFlight int64
	Released bool // lease.released was written (now or before)
}

// ReleaseHeldLease releases lease id at a site (on HQ's request, on expiry,
// or an operator's `tacline lease release`), in one transaction:
//
//  1. the first time, it closes the lease's pool for allocation: the pool
//     is renamed <name>.released, so a reservation that chose it before
//     finds no pool (the provisioner then picks another lease), and its
//     high-water mark is kept as the lease's first SNR never reserved;
//  2. when no reservation of the lease is RESERVED (in flight, or
//     pre-allocated and not yet bound), it writes lease.released with that
//     mark: an audited event the site outbox ships to HQ, after every event
//     of the lease's SNRs below the mark.
//
// Releasing again changes nothing once released. Errors: not_found.
func (db *DB) ReleaseHeldLease(ctx context.Context, id int64, reason, actor string) (HeldLeaseRelease, error) {
	var out HeldLeaseRelease
	err := db.InTx(ctx, func(tx *Tx) error {
		out = HeldLeaseRelease{LeaseID: id}
		// Lock the held lease first: two releases of one lease (the site's
		// loop and an operator's command) serialise here.
		if _, err := tx.exec(tx.rebind(`UPDATE held_leases SET lease_id = lease_id WHERE lease_id = ?`), id); err != nil {
			return translate(err, "lock held lease")
		}
		var r heldRow
		if err := tx.get(&r, tx.rebind(sqlSelectHeld+` WHERE h.lease_id = ?`), id); err != nil {
			if noRows(err) {
				return tacerr.Field(tacerr.NotFound, "lease", "this site holds no lease %d; `tacline site status` lists its leases", id)
			}
			return translate(err, "look up held lease")
		}
		if r.ReleasedAt.Valid {
			out.UnusedFrom, out.Unused, out.Released = uint32(r.UnusedFrom.Int64), r.SNREnd+1-r.UnusedFrom.Int64, true
			return nil
		}
		now := tx.Now().Truncate(time.Microsecond)
		mark, pool := r.UnusedFrom.Int64, r.Name
		if !r.ClosedAt.Valid {
			pool = r.Name + ".released"
			// Renaming takes the pool's row: a reservation claiming it by
			// name either committed before (and mark counts it) or finds
			// no pool after.
			if err := tx.get(&mark, tx.rebind(`UPDATE pools SET name = ? WHERE id = ? RETURNING next_snr`), pool, r.ID); err != nil {
				return translate(err, "close lease pool")
			}
			if _, err := tx.exec(tx.rebind(`UPDATE held_leases SET closed_at = ?, unused_from = ?, release_reason = ? WHERE lease_id = ?`),
				now.UnixMicro(), mark, reason, id); err != nil {
				return translate(err, "close held lease")
			}
		}
		out.UnusedFrom, out.Unused = uint32(mark), r.SNREnd+1-mark
		base := r.TAC * imei.SNRsPerTAC
		if err := tx.get(&out.InFlight, tx.rebind(`SELECT COUNT(*) FROM imeis WHERE imei14 BETWEEN ? AND ? AND state = 'RESERVED'`),
			base+r.SNRStart, base+mark-1); err != nil {
			return translate(err, "count reservations in flight")
		}
		if out.InFlight > 0 {
			return nil
		}
		if _, err := tx.exec(tx.rebind(`UPDATE held_leases SET released_at = ? WHERE lease_id = ?`), now.UnixMicro(), id); err != nil {
			return translate(err, "release held lease")
		}
		attrs := map[string]string{"lease": strconv.FormatInt(id, 10), "hq_pool": r.HQPool, "reason": reason,
			"unused": strconv.FormatInt(out.Unused, 10)}
		if mark <= r.SNREnd {
			attrs["unused_from"] = pad6(uint32(mark))
		}
		tx.Emit(Event{Type: EventLeaseReleased, Time: now, Actor: actor, Pool: pool, TAC: imei.FormatTAC(uint32(r.TAC)), Attrs: attrs})
		out.Released = true
		return nil
	})
	return out, err
}
