package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

func enrollSite(t *testing.T, db *store.DB, name string) {
	t.Helper()
	if err := db.EnrollSite(context.Background(), store.Site{Name: name, Verifier: name + "+00000000+AAAA", Pools: []string{"A"}}, "test"); err != nil {
		t.Fatal(err)
	}
}

func leaseIMEI(t *testing.T, l store.Lease, i int) imei.IMEI {
	t.Helper()
	m, err := imei.New(l.TAC, l.SNRStart+uint32(i))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func bound(seq int64, dev string, ims ...imei.IMEI) store.SiteEvent {
	return store.SiteEvent{Seq: seq, LeafIndex: seq, Type: store.EventIMEIBound, Time: time.Now(), RequestID: "r-" + dev, IMEIs: ims,
		DeviceSerial: dev, CertSerial: "c0" + dev}
}

// TestLeases: a lease takes its block from the pool's high-water mark, so
// HQ's own allocator continues after it; ledger check counts its SNRs as
// leased and unused until the site reports them, and a returned lease's
// unused SNRs are voided.
func TestLeases(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		if _, err := db.GrantLease(ctx, "nowhere", "A", 10, time.Hour, store.LeaseLimits{}, "test"); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("lease to an unknown site: %v", err)
		}
		enrollSite(t, db, "s1")
		if _, err := reserve(db, "hq-1", "A", 2); err != nil {
			t.Fatal(err)
		}
		l, err := db.GrantLease(ctx, "s1", "A", 10, time.Hour, store.LeaseLimits{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if l.SNRStart != 2 || l.SNREnd != 11 || l.Size() != 10 {
			t.Fatalf("lease %+v, want SNRs 2-11", l)
		}
		r, err := reserve(db, "hq-2", "A", 2)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Devices[0][0].SNR(); got != 12 {
			t.Fatalf("HQ allocated SNR %d after the lease, want 12", got)
		}
		if _, err := db.GrantLease(ctx, "s1", "B", 1, time.Hour, store.LeaseLimits{}, "test"); !tacerr.Is(err, tacerr.Forbidden) {
			t.Fatalf("lease of a pool not the site's: %v", err)
		}
		if err := db.EnrollSite(ctx, store.Site{Name: "s1", Verifier: "s1+00000000+AAAA", Pools: []string{"A", "B"}}, "test"); !tacerr.Is(err, tacerr.PoolNotFound) {
			t.Fatalf("enrolment with an unknown pool: %v", err)
		}
		if _, err := db.GrantLease(ctx, "s1", "A", 200, time.Hour, store.LeaseLimits{}, "test"); !tacerr.Is(err, tacerr.PoolExhausted) {
			t.Fatalf("oversized lease: %v", err)
		}
		rep := mustCheck(t, db)
		if rep.Leases != 1 || rep.LeasedUnused != 10 || rep.IMEIs != 4 {
			t.Fatalf("check %+v", rep)
		}

		// The site reports two devices bound and one reserved SNR voided.
		cp := store.SiteCheckpoint{Size: 10, Hash: []byte("h10")}
		res, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			bound(3, "d1", leaseIMEI(t, l, 0), leaseIMEI(t, l, 1)),
			bound(5, "d2", leaseIMEI(t, l, 2), leaseIMEI(t, l, 3)),
			{Seq: 7, LeafIndex: 7, Type: store.EventIMEIVoided, Time: time.Now(), IMEIs: []imei.IMEI{leaseIMEI(t, l, 4)}, Reason: "abandoned"},
		}, cp, "hq")
		if err != nil || res.Applied != 3 || res.AppliedSeq != 7 {
			t.Fatalf("apply = %+v, %v", res, err)
		}
		// A retried batch changes nothing (exactly once).
		res, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(5, "d2", leaseIMEI(t, l, 2), leaseIMEI(t, l, 3))}, cp, "hq")
		if err != nil || res.Applied != 0 || res.Skipped != 1 {
			t.Fatalf("replayed apply = %+v, %v", res, err)
		}
		rec, err := db.LookupIMEI(ctx, leaseIMEI(t, l, 1))
		if err != nil || rec.State != store.StateBound || rec.DeviceSerial != "d1" || rec.Caller != "site:s1" {
			t.Fatalf("HQ row %+v, %v", rec, err)
		}
		rep = mustCheck(t, db)
		if rep.LeasedUnused != 5 || rep.IMEIs != 9 {
			t.Fatalf("check after sync %+v", rep)
		}
		ls, err := db.Leases(ctx, "s1")
		if err != nil || len(ls) != 1 || ls[0].Bound != 4 || ls[0].Voided != 1 || ls[0].Unused != 5 {
			t.Fatalf("leases %+v, %v", ls, err)
		}

		// A revoke of a device HQ knows applies to its row.
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{{Seq: 8, LeafIndex: 8, Type: store.EventIMEIRevoked, Time: time.Now(),
			IMEIs: []imei.IMEI{leaseIMEI(t, l, 0), leaseIMEI(t, l, 1)}, DeviceSerial: "d1", Reason: "compromised"}}, store.SiteCheckpoint{Size: 8, Hash: []byte("h8")}, "hq"); !tacerr.Is(err, tacerr.LeaseViolation) {
			t.Fatalf("a smaller checkpoint: %v", err)
		}
		cp = store.SiteCheckpoint{Size: 12, Hash: []byte("h12")}
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{{Seq: 8, LeafIndex: 8, Type: store.EventIMEIRevoked, Time: time.Now(),
			IMEIs: []imei.IMEI{leaseIMEI(t, l, 0), leaseIMEI(t, l, 1)}, DeviceSerial: "d1", Reason: "compromised"}}, cp, "hq"); err != nil {
			t.Fatal(err)
		}

		// Returning the lease voids its five unused SNRs.
		n, err := db.ReturnLease(ctx, l.ID, "test")
		if err != nil || n != 5 {
			t.Fatalf("return = %d, %v", n, err)
		}
		if _, err := db.ReturnLease(ctx, l.ID, "test"); !tacerr.Is(err, tacerr.InvalidState) {
			t.Fatalf("second return: %v", err)
		}
		rec, err = db.LookupIMEI(ctx, leaseIMEI(t, l, 9))
		if err != nil || rec.State != store.StateVoided || rec.Reason != string(store.VoidLeaseReturned) {
			t.Fatalf("returned SNR %+v, %v", rec, err)
		}
		rep = mustCheck(t, db)
		if rep.LeasedUnused != 0 || rep.IMEIs != 14 {
			t.Fatalf("check after return %+v", rep)
		}
		// Events for a returned lease are refused.
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(13, "d3", leaseIMEI(t, l, 9))},
			store.SiteCheckpoint{Size: 13, Hash: []byte("h13")}, "hq"); !tacerr.Is(err, tacerr.LeaseViolation) {
			t.Fatalf("event of a returned lease: %v", err)
		}
	})
}

// twoSites seeds pool A (SNRs 0-99) and enrolls sites s1 and s2 with a
// lease of 5 SNRs each.
func twoSites(t *testing.T, db *store.DB) (l1, l2 store.Lease) {
	t.Helper()
	seed(t, db, 0, 99)
	enrollSite(t, db, "s1")
	enrollSite(t, db, "s2")
	return grant(t, db, "s1", 5), grant(t, db, "s2", 5)
}

// TestSiteEventsRefused: an IMEI outside the site's leases (another site's,
// HQ's own) or a rewritten checkpoint refuses the whole batch, and nothing
// of it is written.
func TestSiteEventsRefused(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l1, l2 := twoSites(t, db)
		cp := store.SiteCheckpoint{Size: 4, Hash: []byte("h4")}
		_, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			bound(1, "d1", leaseIMEI(t, l1, 0)),
			bound(2, "d2", leaseIMEI(t, l2, 0)), // s2's
		}, cp, "hq")
		if e := wantCode(t, err, tacerr.LeaseViolation); !strings.Contains(e.Message, "outside its leases") || !strings.Contains(e.Message, leaseIMEI(t, l2, 0).String()) {
			t.Fatalf("message %q", e.Message)
		}
		if _, err := db.LookupIMEI(ctx, leaseIMEI(t, l1, 0)); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("a refused batch left a row: %v", err)
		}
		if err := db.RecordSiteRefusal(ctx, "s1", "IMEI outside leases"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(1, "d1", leaseIMEI(t, l1, 0))}, cp, "hq"); err != nil {
			t.Fatal(err)
		}
		_, err = db.ApplySiteEvents(ctx, "s1", nil, store.SiteCheckpoint{Size: 4, Hash: []byte("other")}, "hq")
		wantCode(t, err, tacerr.LeaseViolation)
		_, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(9, "d9", leaseIMEI(t, l1, 1)), bound(8, "d8", leaseIMEI(t, l1, 2))},
			store.SiteCheckpoint{Size: 5, Hash: []byte("h5")}, "hq")
		wantCode(t, err, tacerr.InvalidInput)
		st, err := db.SiteByName(ctx, "s1")
		if err != nil || st.AppliedSeq != 1 || st.Checkpoint.Size != 4 || st.Refusals != 1 || st.LastRefusal != "" {
			t.Fatalf("site %+v, %v", st, err)
		}
		rep := mustCheck(t, db)
		if rep.LeasedUnused != 9 {
			t.Fatalf("check %+v", rep)
		}
	})
}

// TestSiteBatchMixedIMEIs: a batch mixing events about IMEIs HQ knows and
// IMEIs outside the site's leases (HQ's own, another site's, beyond the
// pool) is refused with lease_violation naming every IMEI outside, the site
// and the first event naming one, decided before any event is applied (an
// earlier event that would fail on its own does not decide the error); an
// event about SNRs of the lease the site never reported is refused the same
// way, naming them and the lease. Nothing of either batch is written.
func TestSiteBatchMixedIMEIs(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l1, l2 := twoSites(t, db)
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(1, "d1", leaseIMEI(t, l1, 0))}, store.SiteCheckpoint{Size: 2, Hash: []byte("h2")}, "hq"); err != nil {
			t.Fatal(err)
		}
		r, err := reserve(db, "hq-own", "A", 1)
		if err != nil {
			t.Fatal(err)
		}
		own := r.Devices[0][0]
		beyond, err := imei.New(l1.TAC, 500) // past pool A's end
		if err != nil {
			t.Fatal(err)
		}
		revoke := func(seq int64, dev string, ims ...imei.IMEI) store.SiteEvent {
			return store.SiteEvent{Seq: seq, LeafIndex: seq, Type: store.EventIMEIRevoked, Time: time.Now(), IMEIs: ims, DeviceSerial: dev, Reason: "compromised"}
		}
		cp := store.SiteCheckpoint{Size: 20, Hash: []byte("h20")}
		_, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			revoke(2, "d1", leaseIMEI(t, l1, 0)),        // known to HQ
			bound(3, "d2", leaseIMEI(t, l1, 1)),         // new, in the lease
			revoke(4, "d3", leaseIMEI(t, l1, 2)),        // in the lease, never reported
			revoke(5, "hq-own", own),                    // HQ's own device
			bound(6, "d4", leaseIMEI(t, l2, 0), beyond), // s2's, and beyond the pool
		}, cp, "hq")
		e := wantCode(t, err, tacerr.LeaseViolation)
		if e.Field != "events[3].imeis" {
			t.Fatalf("field %q", e.Field)
		}
		for _, want := range []string{"site s1", "3 IMEIs outside its leases", own.String(), leaseIMEI(t, l2, 0).String(), beyond.String(), "nothing of it applied"} {
			if !strings.Contains(e.Message, want) {
				t.Fatalf("message %q lacks %q", e.Message, want)
			}
		}
		for _, m := range []imei.IMEI{leaseIMEI(t, l1, 0), leaseIMEI(t, l1, 1), own} {
			if rec, err := db.LookupIMEI(ctx, m); err != nil && !tacerr.Is(err, tacerr.NotFound) || err == nil && rec.State == store.StateRevoked {
				t.Fatalf("a refused batch changed %s: %+v, %v", m, rec, err)
			}
		}
		if _, err := db.LookupIMEI(ctx, leaseIMEI(t, l1, 1)); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("a refused batch left a row: %v", err)
		}

		// Only IMEIs of the lease, one of them never reported: refused,
		// naming it and the lease, not not_found.
		_, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			revoke(2, "d1", leaseIMEI(t, l1, 0)),
			revoke(3, "d3", leaseIMEI(t, l1, 0), leaseIMEI(t, l1, 2)),
		}, cp, "hq")
		e = wantCode(t, err, tacerr.LeaseViolation)
		for _, want := range []string{"site s1", "1 IMEI of its lease " + strconv.FormatInt(l1.ID, 10), "never reported", leaseIMEI(t, l1, 2).String()} {
			if !strings.Contains(e.Message, want) {
				t.Fatalf("message %q lacks %q", e.Message, want)
			}
		}
		if rec, err := db.LookupIMEI(ctx, leaseIMEI(t, l1, 0)); err != nil || rec.State != store.StateBound {
			t.Fatalf("a refused batch revoked %+v, %v", rec, err)
		}
		// An SNR that a release earlier in the batch handed back is
		// outside too.
		_, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(2, l1.ID, int64(l1.SNRStart)+1), bound(3, "d5", leaseIMEI(t, l1, 4))}, cp, "hq")
		if e = wantCode(t, err, tacerr.LeaseViolation); e.Field != "events[1].imeis" || !strings.Contains(e.Message, "1 IMEI outside its leases") ||
			!strings.Contains(e.Message, leaseIMEI(t, l1, 4).String()) {
			t.Fatalf("an SNR handed back earlier in the batch: %v", e)
		}
		if st := leaseOf(t, db, l1.ID); !st.ReturnedAt.IsZero() {
			t.Fatalf("a refused batch released the lease: %+v", st)
		}
		st, err := db.SiteByName(ctx, "s1")
		if err != nil || st.AppliedSeq != 1 || st.Checkpoint.Size != 2 {
			t.Fatalf("site %+v, %v", st, err)
		}
		mustCheck(t, db)
	})
}

// TestCheckFindsLeaseViolations: a missing row outside any lease is still
// a violation, and so is a row HQ wrote for itself inside a site's lease.
func TestCheckFindsLeaseViolations(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		if _, err := reserve(db, "hq-1", "A", 2); err != nil {
			t.Fatal(err)
		}
		if _, err := db.GrantLease(ctx, "s1", "A", 5, time.Hour, store.LeaseLimits{}, "test"); err != nil {
			t.Fatal(err)
		}
		// Move the high-water mark behind the ledger's back: SNRs 7-8 have
		// no row and no lease.
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			_, err := storetest.Exec(tx, `UPDATE pools SET next_snr = 9`)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		rep, err := db.Check(ctx)
		if err != nil || rep.OK() || !strings.Contains(rep.Violations[0], "SNR 000007 has no ledger row") {
			t.Fatalf("check %+v, %v", rep, err)
		}
	})
}

// TestSitesMigration: the schema version before sites upgrades to it.
func TestSitesMigration(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		if _, err := reserve(db, "hq-1", "A", 2); err != nil {
			t.Fatal(err)
		}
		if err := db.MigrateDownTo(ctx, 6); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Sites(ctx); err == nil {
			t.Fatal("sites table present at schema version 6")
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		enrollSite(t, db, "s1")
		if _, err := db.GrantLease(ctx, "s1", "A", 5, time.Hour, store.LeaseLimits{}, "test"); err != nil {
			t.Fatal(err)
		}
		if rep := mustCheck(t, db); rep.IMEIs != 2 || rep.LeasedUnused != 5 {
			t.Fatalf("check %+v", rep)
		}
	})
}

// TestSiteLeafShippedAgain: HQ keeps the audit leaf of the last site event
// it applied; an event at or below it under a new sequence number (a leaf
// shipped again) refuses its batch (lease_violation on its leaf_index)
// and writes nothing; a retried batch (sequence numbers applied already)
// is skipped as before, and the next leaf applies.
func TestSiteLeafShippedAgain(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		l := grant(t, db, "s1", 10)
		cp := store.SiteCheckpoint{Size: 10, Hash: []byte("h10")}
		first := bound(1, "d1", leaseIMEI(t, l, 0))
		first.LeafIndex = 3
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{first}, cp, "hq"); err != nil {
			t.Fatal(err)
		}
		again := bound(2, "d2", leaseIMEI(t, l, 1))
		again.LeafIndex = 3
		_, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{again}, cp, "hq")
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.LeaseViolation || e.Field != "events[0].leaf_index" {
			t.Fatalf("an event at the applied leaf: %v, want lease_violation on events[0].leaf_index", err)
		}
		if _, err := db.LookupIMEI(ctx, leaseIMEI(t, l, 1)); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("the refused batch wrote IMEI %s: %v", leaseIMEI(t, l, 1), err)
		}
		st, err := db.SiteByName(ctx, "s1")
		if err != nil || st.AppliedSeq != 1 || st.AppliedLeaf != 3 {
			t.Fatalf("site after the refusal: applied seq %d leaf %d, %v; want 1 and 3", st.AppliedSeq, st.AppliedLeaf, err)
		}
		again.LeafIndex = 4
		res, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{first, again}, cp, "hq")
		if err != nil || res.Skipped != 1 || res.Applied != 1 {
			t.Fatalf("the retried event and the next leaf: %+v, %v", res, err)
		}
		if st, err := db.SiteByName(ctx, "s1"); err != nil || st.AppliedLeaf != 4 {
			t.Fatalf("applied leaf %d, %v; want 4", st.AppliedLeaf, err)
		}
	})
}
