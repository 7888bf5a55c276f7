package store

import (
	"bytes"
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/tacerr"
)

// SiteEvent is one ledger event of a site as HQ applies it. Only the
// events that change an IMEI's fate travel: imei.bound, imei.voided,
// imei.revoked and device.reissued.
type SiteEvent struct {
	// Seq is the event's sequence number at the site (its sync outbox
	// id): strictly increasing within the site.
	Seq          int64
	Type         string
	Time         time.Time // when the change committed at the site
	RequestID    string
	IMEIs        []imei.IMEI
	DeviceSerial string
	CertSerial   string
	Reason       string
	// PreviousCertSerial is a reissue's replaced certificate.
	PreviousCertSerial string
	// Lease and UnusedFrom are a lease.released event's: HQ's lease id and
	// its first SNR the site never reserved (-1: none left).
	Lease      int64
	UnusedFrom int64
	// LeafIndex is the index of the event's leaf in the site's audit log
	// (HQ verified its inclusion); HQ's event records it as site_leaf.
	LeafIndex int64
}

// SiteSyncResult says what ApplySiteEvents did.
type SiteSyncResult struct {
	Applied    int   // events applied by this call
	Skipped    int   // events applied before (a retried batch): exactly-once
	AppliedSeq int64 // the site's applied sequence after the call
}

// ApplySiteEvents applies site's events to HQ's ledger in one transaction
// and records cp as the site's last verified checkpoint (clearing the
// last refusal: the site is consistent again). The caller (the
// HQ side of package site) has verified cp's signature and its consistency
// with the previous one, cp.From; the store answers conflict when the
// recorded checkpoint is no longer cp.From (another batch was applied
// meanwhile), and refuses a checkpoint smaller than the recorded one, or
// of the same size with another root hash.
//
// Exactly-once: events with Seq at or below the site's applied sequence
// are skipped (a retried batch changes nothing); the others must be in
// strictly increasing order. Every IMEI must lie in a lease of the site
// (of a returned lease, among the SNRs that stayed its own), else the
// whole batch is refused with lease_violation naming every IMEI outside,
// decided before any event is applied (nothing of it is written); an
// imei.bound of an IMEI HQ has a row for, a revocation, reissue or void of
// SNRs HQ has no row for, and a new SNR reported for a returned lease, are
// refused the same way. A lease.released event
// applies the site's release of the lease it names (applyLeaseRelease).
// Each applied event emits the matching HQ event (with the site in its
// attributes), so HQ's audit log and register outbox record it. Errors: not_found (site), conflict (cp.From),
// invalid_input (order, checkpoint), lease_violation, invalid_state.
func (db *DB) ApplySiteEvents(ctx context.Context, site string, events []SiteEvent, cp SiteCheckpoint, actor string) (SiteSyncResult, error) {
	var res SiteSyncResult
	err := db.InTx(ctx, func(tx *Tx) error {
		res = SiteSyncResult{}
		now := tx.Now().Truncate(time.Microsecond)
		// Lock the site's row first: two replicas applying one site's
		// batches serialise here.
		if _, err := tx.exec(tx.rebind(`UPDATE sites SET last_sync_at = ? WHERE name = ?`), now.UnixMicro(), site); err != nil {
			return translate(err, "lock site")
		}
		st, err := siteByName(txQuerier{tx}, site)
		if err != nil {
			return err
		}
		switch {
		case cp.From != nil && (cp.From.Size != st.Checkpoint.Size || !bytes.Equal(cp.From.Hash, st.Checkpoint.Hash)):
			// Another batch of the site was applied since the caller checked
			// cp against the checkpoint it read: cp may not extend the new one.
			return tacerr.Field(tacerr.Conflict, "proof_from", "headquarters checked site %s's checkpoint of size %d against size %d, but has verified size %d since: read the status and send again",
				site, cp.Size, cp.From.Size, st.Checkpoint.Size)
		case cp.Size < st.Checkpoint.Size:
			return tacerr.Field(tacerr.LeaseViolation, "checkpoint", "site %s's checkpoint of size %d is older than the size %d HQ verified", site, cp.Size, st.Checkpoint.Size)
		case cp.Size == st.Checkpoint.Size && st.Checkpoint.Size > 0 && !bytes.Equal(cp.Hash, st.Checkpoint.Hash):
			return tacerr.Field(tacerr.LeaseViolation, "checkpoint", "site %s's checkpoint of size %d has another root hash than the one HQ verified: its log was rewritten", site, cp.Size)
		}
		rows, err := leasesOf(txQuerier{tx}, site)
		if err != nil {
			return err
		}
		// Decided before anything of the batch is written: every IMEI
		// outside the site's leases, in any event, refuses it whole.
		if err := outsideLeases(rows, site, st.AppliedSeq, events); err != nil {
			return err
		}
		seq, leaf := st.AppliedSeq, st.AppliedLeaf
		for i, ev := range events {
			if ev.Seq <= st.AppliedSeq {
				res.Skipped++
				continue
			}
			if ev.Seq <= seq {
				return tacerr.Field(tacerr.InvalidInput, "events["+strconv.Itoa(i)+"].seq", "sequence %d does not follow %d", ev.Seq, seq)
			}
			if ev.LeafIndex <= leaf {
				// The sequence number is not in the leaf: a leaf HQ applied
				// once, shipped again under a new one, is refused here.
				return tacerr.Field(tacerr.LeaseViolation, "events["+strconv.Itoa(i)+"].leaf_index",
					"site %s's event %d is audit leaf %d, at or below leaf %d whose event HQ applied already: a leaf shipped again; the batch is refused",
					site, ev.Seq, ev.LeafIndex, leaf)
			}
			if err := tx.applyOneSiteEvent(rows, site, i, ev, actor, now); err != nil {
				return err
			}
			seq, leaf = ev.Seq, ev.LeafIndex
			res.Applied++
		}
		res.AppliedSeq = seq
		applied := sql.NullInt64{Int64: leaf, Valid: leaf >= 0}
		up, err := tx.exec(tx.rebind(`UPDATE sites SET applied_seq = ?, applied_leaf = ?, cp_size = ?, cp_hash = ?, cp_note = ?, cp_cosigned = ?, last_refusal = ''
			WHERE name = ? AND applied_seq = ?`), seq, applied, cp.Size, cp.Hash, cp.Note, cp.Cosigned, site, st.AppliedSeq)
		if err != nil {
			return translate(err, "record site checkpoint")
		}
		return oneRow(up, "record site %s's checkpoint", site)
	})
	return res, err
}

// applyOneSiteEvent applies events[i] of site, whose leases are rows: a
// lease.released to the lease it names, any other event to the lease
// holding its IMEIs.
func (tx *Tx) applyOneSiteEvent(rows []leaseRow, site string, i int, ev SiteEvent, actor string, now time.Time) error {
	if ev.Type == EventLeaseReleased {
		r, err := leaseOfSite(rows, site, ev.Lease)
		if err != nil {
			return err
		}
		return tx.applyLeaseRelease(site, r, ev, actor, now)
	}
	if len(ev.IMEIs) == 0 {
		return tacerr.Field(tacerr.InvalidInput, "events["+strconv.Itoa(i)+"].imeis", "an event names at least one IMEI")
	}
	lease, err := siteLease(rows, site, i, ev.IMEIs)
	if err != nil {
		return err
	}
	return tx.applySiteEvent(site, lease, ev, actor, now)
}

// maxNamedIMEIs bounds the IMEIs an error lists (the count says the rest).
const maxNamedIMEIs = 10

// outsideLeases refuses (lease_violation) a batch of site's events in which
// any event still to apply (sequence above applied) names an IMEI that lies
// in none of the site's leases (of a returned lease, among the SNRs that
// stayed its own). The error names the site, those IMEIs (the first
// maxNamedIMEIs, and how many) and, as its field, the first event naming one.
func outsideLeases(rows []leaseRow, site string, applied int64, events []SiteEvent) error {
	var out []string
	seen := map[string]bool{}
	first := -1
	for i, ev := range events {
		if ev.Seq <= applied || ev.Type == EventLeaseReleased {
			continue
		}
		for _, m := range imeisOutside(rows, ev.IMEIs) {
			if seen[m] {
				continue
			}
			seen[m] = true
			if first < 0 {
				first = i
			}
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return outsideError(site, first, out)
}

// imeisOutside returns those of ims that lie in none of rows (a site's
// leases; of a returned lease, among the SNRs that stayed its own).
func imeisOutside(rows []leaseRow, ims []imei.IMEI) []string {
	var out []string
	for _, m := range ims {
		v := int64(m.Uint64())
		if !slices.ContainsFunc(rows, func(r leaseRow) bool { return r.lo() <= v && v <= r.usedHi() }) {
			out = append(out, m.String())
		}
	}
	return out
}

// outsideError refuses site's batch for the IMEIs out outside its leases,
// first named by events[i].
func outsideError(site string, i int, out []string) error {
	return tacerr.Field(tacerr.LeaseViolation, "events["+strconv.Itoa(i)+"].imeis",
		"site %s reports %s outside its leases (in no lease it holds, or among SNRs its release handed back; a cloning signal): %s; the batch is refused and nothing of it applied",
		site, countIMEIs(len(out)), nameIMEIs(out))
}

func countIMEIs(n int) string {
	if n == 1 {
		return "1 IMEI"
	}
	return strconv.Itoa(n) + " IMEIs"
}

// nameIMEIs lists at most maxNamedIMEIs of ims and says how many more.
func nameIMEIs(ims []string) string {
	if len(ims) <= maxNamedIMEIs {
		return strings.Join(ims, ", ")
	}
	return strings.Join(ims[:maxNamedIMEIs], ", ") + " and " + strconv.Itoa(len(ims)-maxNamedIMEIs) + " more"
}

// siteLease returns the lease of site that holds every IMEI of one
// event, or lease_violation. A returned lease holds only the SNRs that
// stayed its own (below what its release handed back): events about
// devices HQ recorded from it (revoked, reissued, scrapped) still apply,
// while applySiteEvent refuses new SNRs reported for it.
func siteLease(rows []leaseRow, site string, i int, ims []imei.IMEI) (leaseRow, error) {
	for _, r := range rows {
		all := true
		for _, m := range ims {
			v := int64(m.Uint64())
			all = all && r.lo() <= v && v <= r.usedHi()
		}
		if all {
			return r, nil
		}
	}
	// Outside since a release earlier in the batch handed them back.
	if out := imeisOutside(rows, ims); len(out) > 0 {
		return leaseRow{}, outsideError(site, i, out)
	}
	return leaseRow{}, tacerr.Field(tacerr.LeaseViolation, "imeis", "IMEIs %s of one device lie in different leases of site %s, which hands out a device's IMEIs from one: the batch is refused", nameIMEIs(imeiStrings(ims)), site)
}

func (tx *Tx) applySiteEvent(site string, l leaseRow, ev SiteEvent, actor string, now time.Time) error {
	keys := make([]int64, len(ev.IMEIs))
	for i, m := range ev.IMEIs {
		keys[i] = int64(m.Uint64())
	}
	q, args, err := tx.in(`SELECT imei14 FROM imeis WHERE imei14 IN (?)`, keys)
	if err != nil {
		return err
	}
	var found []int64
	if err := tx.sel(&found, q, args...); err != nil {
		return translate(err, "look up site IMEIs")
	}
	have := len(found)
	var missing []string
	for i, k := range keys {
		if !slices.Contains(found, k) {
			missing = append(missing, ev.IMEIs[i].String())
		}
	}
	// unreported refuses an event about IMEIs of the lease HQ has no row for
	// (the site never reported them bound or voided): the site's log and
	// HQ's ledger disagree, which a sync never makes.
	unreported := func() error {
		return tacerr.Field(tacerr.LeaseViolation, "imeis", "site %s reports %s for %s of its lease %d that it never reported bound or voided (headquarters has no row for them): %s; the batch is refused and nothing of it applied",
			site, ev.Type, countIMEIs(len(missing)), l.ID, nameIMEIs(missing))
	}
	requestID := SiteCaller(site) + ":" + strconv.FormatInt(ev.Seq, 10)
	attrs := map[string]string{"site": site, "site_seq": strconv.FormatInt(ev.Seq, 10), "site_request_id": ev.RequestID,
		"site_leaf": strconv.FormatInt(ev.LeafIndex, 10)}
	insert := func(state lifecycle.State) error {
		if l.ReturnedAt.Valid {
			return tacerr.Field(tacerr.LeaseViolation, "imeis", "site %s reports %s for IMEI %s of lease %d, returned at %s: new SNRs reported after a return are refused",
				site, ev.Type, ev.IMEIs[0], l.ID, micros(l.ReturnedAt.Int64).Format(time.RFC3339))
		}
		if have != 0 {
			return tacerr.Field(tacerr.LeaseViolation, "imeis", "site %s reports %s for IMEI %s, which HQ holds a row for already: the batch is refused",
				site, ev.Type, ev.IMEIs[0])
		}
		resID, err := tx.insertSiteReservation(requestID, l.PoolID, SiteCaller(site), ev.DeviceSerial, 1, len(ev.IMEIs), now)
		if err != nil {
			return err
		}
		at := ev.Time.UnixMicro()
		for slot, k := range keys {
			var bound, voided any
			if state == StateBound {
				bound = at
			} else {
				voided = at
			}
			if _, err := tx.exec(tx.rebind(`INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, device_serial, cert_serial,
				reason, reserved_at, bound_at, voided_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`),
				k, l.PoolID, resID, 0, slot, state, ev.DeviceSerial, ev.CertSerial, ev.Reason, at, bound, voided); err != nil {
				return translate(err, "record site IMEI")
			}
		}
		tx.Emit(Event{Type: ev.Type, Time: now, Actor: actor, RequestID: requestID, Pool: l.Pool, TAC: ev.IMEIs[0].TACString(),
			IMEIs: imeiStrings(ev.IMEIs), DeviceSerial: ev.DeviceSerial, CertSerial: ev.CertSerial, Reason: ev.Reason, Attrs: attrs})
		return nil
	}
	switch ev.Type {
	case EventIMEIBound:
		if ev.DeviceSerial == "" || ev.CertSerial == "" {
			return tacerr.Field(tacerr.InvalidInput, "device_serial", "a bound event names its device and certificate")
		}
		return insert(StateBound)
	case EventIMEIVoided:
		if have == 0 {
			// Reserved and voided at the site (abandoned, scrapped before
			// binding): HQ never saw it bound.
			return insert(StateVoided)
		}
		if len(missing) > 0 {
			return unreported()
		}
		reason := lifecycle.VoidReason(ev.Reason)
		if !reason.Valid() {
			return tacerr.Field(tacerr.InvalidInput, "reason", "site %s reports void reason %q, which is not one of the ledger's", site, ev.Reason)
		}
		return tx.Void(ev.IMEIs, reason, "site "+site, actor, requestID)
	case EventIMEIRevoked:
		if len(missing) > 0 {
			return unreported()
		}
		reason := lifecycle.RevokeReason(ev.Reason)
		if !reason.Valid() {
			return tacerr.Field(tacerr.InvalidInput, "reason", "site %s reports revoke reason %q, which is not one of the ledger's", site, ev.Reason)
		}
		return tx.Revoke(ev.IMEIs, reason, actor, requestID)
	case EventDeviceReissued:
		// A reissue follows the certificate HQ recorded: a leaf shipped
		// again under a new sequence number (the sequence is not in the
		// leaf), or out of order, would put back a replaced certificate.
		if len(missing) > 0 {
			return unreported()
		}
		for _, m := range ev.IMEIs {
			rec, err := tx.LookupIMEI(m)
			if err != nil {
				return err
			}
			if rec.CertSerial != ev.PreviousCertSerial {
				return tacerr.Field(tacerr.LeaseViolation, "previous_cert_serial", "site %s reports device %s reissued from certificate %s, but HQ recorded certificate %s for IMEI %s: the batch is refused",
					site, ev.DeviceSerial, ev.PreviousCertSerial, rec.CertSerial, m)
			}
		}
		return tx.RecordReissue(ev.IMEIs, ev.DeviceSerial, ev.CertSerial, ev.PreviousCertSerial, actor, requestID)
	}
	return tacerr.Field(tacerr.InvalidInput, "type", "%q is not a site event type (imei.bound, imei.voided, imei.revoked, device.reissued, lease.released)", ev.Type)
}

// RecordSiteRefusal counts a refused batch of site and keeps why, in its
// own transaction (the batch's rolled back), for `tacline site status`.
func (db *DB) RecordSiteRefusal(ctx context.Context, site, why string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(tx.rebind(`UPDATE sites SET refusals = refusals + 1, last_refusal = ? WHERE name = ?`), why, site)
		return translate(err, "record site refusal")
	})
}
