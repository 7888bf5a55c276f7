package store

import (
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
	voided, err := tx.voidUnreported(*r, base+mark-1, actor, now)
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
