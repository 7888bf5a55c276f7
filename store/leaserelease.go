package store

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// A lease released by its site with proof (docs/sites.md, "Returns").
//
// The site releases a lease in one transaction of its ledger: it closes
// the lease's pool for allocation and writes lease.released, carrying the
// first SNR it never reserved (its allocator hands SNRs out in order, and
// it releases only once no reservation of the lease is in flight, so every
// SNR below the mark was reported bound or voided before the release in its
// log). The event reaches HQ in a sync batch whose checkpoint HQ verified
// (signature, consistency), in the site's log order; applyLeaseRelease then
// voids the SNRs below the mark HQ never heard of (none, when the site's
// log is complete) and hands the SNRs from the mark to the lease's end back
// to the pool, where GrantLease takes them before the high-water mark.

// applyLeaseRelease applies a site's lease.released event to lease *r (one
// of the site's, not returned) and marks *r returned for the rest of the
// batch. Errors: lease_violation (the site reported SNRs at or above its
// mark: its log contradicts itself), invalid_input (a mark outside the
// lease).
func (tx *Tx) applyLeaseRelease(site string, r *leaseRow, ev SiteEvent, actor string, now time.Time) error {
	// Serialised with a forced return's chunks (ReturnLeaseChunks), which
	// void SNRs of the lease while it is held: the count of SNRs at or
	// above the mark below reads after the last chunk committed.
	if err := tx.lockLease(r.ID); err != nil {
		return err
	}
	mark := ev.UnusedFrom
	if mark < 0 {
		mark = r.SNREnd + 1
	}
	if mark < r.SNRStart || mark > r.SNREnd+1 {
		return tacerr.Field(tacerr.InvalidInput, "unused_from", "site %s releases lease %d (SNRs %06d-%06d) from SNR %06d, outside the lease", site, r.ID, r.SNRStart, r.SNREnd, mark)
	}
	base := r.TAC * imei.SNRsPerTAC
	var above int64
	if err := tx.get(&above, tx.rebind(`SELECT COUNT(*) FROM imeis WHERE imei14 BETWEEN ? AND ?`), base+mark, r.hi()); err != nil {
		return translate(err, "look up released SNRs")
	}
	if above > 0 {
		return tacerr.Field(tacerr.LeaseViolation, "unused_from", "site %s releases lease %d from SNR %06d, but reported %d SNRs at or above it: the batch is refused", site, r.ID, mark, above)
	}
	voided, err := tx.voidUnreported(*r, r.lo(), base+mark-1, actor, now)
	if err != nil {
		return err
	}
	var from sql.NullInt64
	if mark <= r.SNREnd {
		from = sql.NullInt64{Int64: mark, Valid: true}
	}
	attrs := map[string]string{"voided": strconv.FormatInt(voided, 10), "handed_back": strconv.FormatInt(r.SNREnd+1-mark, 10),
		"site_seq": strconv.FormatInt(ev.Seq, 10), "proof": "site log"}
	if from.Valid {
		attrs["released_from"] = pad6(uint32(mark))
	}
	if err := tx.endLease(*r, from, now, actor, attrs); err != nil {
		return err
	}
	r.ReturnedAt = sql.NullInt64{Int64: now.UnixMicro(), Valid: true}
	r.ReleasedFrom, r.ReletNext = from, from
	return nil
}

// leaseOfSite returns the lease id of rows (a site's leases), or
// lease_violation when the site holds no such lease or it was returned.
func leaseOfSite(rows []leaseRow, site string, id int64) (*leaseRow, error) {
	for i := range rows {
		if rows[i].ID != id {
			continue
		}
		if rows[i].ReturnedAt.Valid {
			return nil, tacerr.Field(tacerr.LeaseViolation, "lease", "site %s reports an event for lease %d, returned at %s: events after a return are refused",
				site, id, micros(rows[i].ReturnedAt.Int64).Format(time.RFC3339))
		}
		return &rows[i], nil
	}
	return nil, tacerr.Field(tacerr.LeaseViolation, "lease", "site %s releases lease %d, which is not one of its leases: the batch is refused", site, id)
}

// ReturnChunk is how many SNRs of a lease one transaction of a forced
// return goes through (ReturnLease).
const ReturnChunk = 5000

// ReturnProgress is a forced return's progress after a committed chunk.
type ReturnProgress struct {
	Lease  int64
	Done   int64 // SNRs of the lease gone through
	Total  int64 // the lease's SNRs
	Voided int64 // SNRs this run voided so far
}

// ReturnLease ends lease id without the site's proof (a site that is gone:
// `tacline lease return --force`): its SNRs that have no row at HQ (the
// site never reported them) are recorded VOIDED with reason
// lease_returned, one imei.voided event each, and lease.returned is
// emitted; it returns how many this call voided. Voiding is the safe
// answer for SNRs HQ cannot prove the site never reserved: an SNR is never
// handed out twice. A site that can still sync releases its lease instead
// (RequestLeaseReturn), which hands its never-reserved SNRs back to the
// pool. Events of the site for a returned lease are refused afterwards.
// It works in chunks of ReturnChunk SNRs (ReturnLeaseChunks).
// Errors: not_found, invalid_state (returned already).
func (db *DB) ReturnLease(ctx context.Context, id int64, actor string) (int64, error) {
	return db.ReturnLeaseChunks(ctx, id, actor, ReturnChunk, nil)
}

// ReturnLeaseChunks is ReturnLease in transactions of at most chunk SNRs
// of the lease each, in SNR order, reporting each committed chunk to
// progress (when not nil). Each chunk voids the SNRs of its range that
// have no row, with the lease still held; the last one also ends the
// lease. Between chunks the ledger is consistent (`ledger check`: the
// voided SNRs have rows, the rest are leased and unused), and the site's
// events still apply to SNRs not voided yet (a bound event for a voided
// one is refused, as after the return). Interrupted (ctx ended, a crash,
// an outage), it leaves that state: calling it again goes through the
// chunks again, finds the voided SNRs' rows and voids only the rest, and
// ends the lease. A release the site proves meanwhile ends the lease
// first (the lease row serialises the two); the forced return then
// answers invalid_state. Errors: not_found, invalid_state (returned
// already), unavailable (interrupted: run it again).
func (db *DB) ReturnLeaseChunks(ctx context.Context, id int64, actor string, chunk int64, progress func(ReturnProgress)) (int64, error) {
	if chunk <= 0 {
		chunk = ReturnChunk
	}
	var r leaseRow
	if err := db.InTx(ctx, func(tx *Tx) error {
		var err error
		r, err = tx.leaseByID(id)
		return err
	}); err != nil {
		return 0, err
	}
	p := ReturnProgress{Lease: id, Total: r.hi() - r.lo() + 1}
	for from := r.lo(); from <= r.hi(); from += chunk {
		to := min(from+chunk-1, r.hi())
		var n int64
		err := ctx.Err()
		if err == nil {
			err = db.InTx(ctx, func(tx *Tx) error {
				if err := tx.lockLease(id); err != nil {
					return err
				}
				cur, err := tx.leaseByID(id)
				if err != nil {
					return err
				}
				now := tx.Now().Truncate(time.Microsecond)
				if !cur.ForcedAt.Valid {
					// The first chunk: `lease list` shows the return as
					// started until the last one ends the lease.
					if _, err := tx.exec(tx.rebind(`UPDATE leases SET forced_at = ? WHERE id = ?`), now.UnixMicro(), id); err != nil {
						return translate(err, "mark forced return")
					}
				}
				if n, err = tx.voidUnreported(cur, from, to, actor, now); err != nil {
					return err
				}
				// Counted with the voids, so that the count is the forced
				// return's own: a site's release voids with the same reason.
				if _, err := tx.exec(tx.rebind(`UPDATE leases SET forced_voided = forced_voided + ? WHERE id = ?`), n, id); err != nil {
					return translate(err, "count forced voids")
				}
				if to < r.hi() {
					return nil
				}
				// The whole lease is voided where HQ has no row: end it,
				// counting every SNR a forced return voided, by this run
				// or an interrupted one before it.
				all := cur.ForcedVoided + n
				return tx.endLease(cur, sql.NullInt64{}, now, actor, map[string]string{"voided": strconv.FormatInt(all, 10), "proof": "none (forced)"})
			})
		}
		if err != nil {
			if ctx.Err() != nil {
				err = tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "forced return of lease %d interrupted after %d of its %d SNRs (%d voided, committed; the lease is still held): run `tacline lease return --force %d` again to finish",
					id, p.Done, p.Total, p.Voided, id)
			}
			return p.Voided, err
		}
		p.Done += to - from + 1
		p.Voided += n
		if progress != nil {
			progress(p)
		}
	}
	return p.Voided, nil
}

// lockLease holds lease id's row until the transaction ends (PostgreSQL;
// SQLite's writer holds the whole ledger), so that a forced return's chunk
// and a site's release of the lease never interleave.
func (tx *Tx) lockLease(id int64) error {
	var ids []int64
	if err := tx.sel(&ids, tx.rebind(`SELECT id FROM leases WHERE id = ?`+tx.db.sql.forUpdate), id); err != nil {
		return translate(err, "lock lease")
	}
	return nil
}

// voidUnreported records VOIDED (reason lease_returned) every SNR of lease
// r between the 14-digit IMEIs first and last that has no row at HQ, one
// imei.voided event each, under one reservation, and returns how many.
func (tx *Tx) voidUnreported(r leaseRow, first, last int64, actor string, now time.Time) (int64, error) {
	first = max(first, r.lo())
	if last < first {
		return 0, nil
	}
	var used []int64
	if err := tx.sel(&used, tx.rebind(`SELECT imei14 FROM imeis WHERE imei14 BETWEEN ? AND ? ORDER BY imei14`), first, last); err != nil {
		return 0, translate(err, "list used lease SNRs")
	}
	var free []imei.IMEI
	k := 0
	for v := first; v <= last; v++ {
		if k < len(used) && used[k] == v {
			k++
			continue
		}
		m, err := imei.FromUint64(uint64(v))
		if err != nil {
			return 0, tacerr.Wrap(tacerr.Internal, err, "lease %d SNR", r.ID)
		}
		free = append(free, m)
	}
	if len(free) == 0 {
		return 0, nil
	}
	// One reservation per chunk: named for the lease and its first SNR.
	resID, err := tx.insertSiteReservation(fmtLeaseReturn(r.ID)+":"+pad6(free[0].SNR()), r.PoolID, SiteCaller(r.Site), "", len(free), 1, now)
	if err != nil {
		return 0, err
	}
	for i, m := range free {
		if _, err := tx.exec(tx.rebind(`INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, reason, reserved_at, voided_at)
			VALUES (?,?,?,?,?,'VOIDED',?,?,?)`), int64(m.Uint64()), r.PoolID, resID, i, 0, VoidLeaseReturned,
			now.UnixMicro(), now.UnixMicro()); err != nil {
			return 0, translate(err, "void unused lease SNR")
		}
		tx.Emit(Event{Type: EventIMEIVoided, Time: now, Actor: actor, Pool: r.Pool, TAC: m.TACString(),
			IMEIs: []string{m.String()}, Reason: string(VoidLeaseReturned),
			Attrs: map[string]string{"previous_state": "LEASED", "site": r.Site, "lease": strconv.FormatInt(r.ID, 10)}})
	}
	return int64(len(free)), nil
}
