package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

func released(seq, lease int64, unusedFrom int64) store.SiteEvent {
	return store.SiteEvent{Seq: seq, LeafIndex: seq, Type: store.EventLeaseReleased, Time: time.Now(), Lease: lease, UnusedFrom: unusedFrom}
}

func grant(t *testing.T, db *store.DB, site string, size int64) store.Lease {
	t.Helper()
	l, err := db.GrantLease(context.Background(), site, "A", size, time.Hour, store.LeaseLimits{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func leaseOf(t *testing.T, db *store.DB, id int64) store.LeaseStats {
	t.Helper()
	ls, err := db.Leases(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("no lease %d", id)
	return store.LeaseStats{}
}

// TestLeaseReleaseRelets: a lease released with the site's proof voids the
// SNRs below its mark HQ never heard of and hands the rest back; later
// grants to other sites take the handed-back SNRs (oldest first, no larger
// than what is left) before the high-water mark, never to the site that
// released them; events of the released lease are refused; ledger check
// accounts for every SNR and no SNR lies in two leases.
func TestLeaseReleaseRelets(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		enrollSite(t, db, "s2")
		l1 := grant(t, db, "s1", 10) // SNRs 0-9
		// The site bound SNRs 0-1, voided 2, and (its log says) reserved
		// up to 3: SNR 3 was never reported, so HQ voids it.
		cp := store.SiteCheckpoint{Size: 5, Hash: []byte("h5")}
		res, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			bound(1, "d1", leaseIMEI(t, l1, 0), leaseIMEI(t, l1, 1)),
			{Seq: 2, LeafIndex: 2, Type: store.EventIMEIVoided, Time: time.Now(), IMEIs: []imei.IMEI{leaseIMEI(t, l1, 2)}, Reason: "abandoned"},
			released(3, l1.ID, 4),
		}, cp, "hq")
		if err != nil || res.Applied != 3 {
			t.Fatalf("apply = %+v, %v", res, err)
		}
		rec, err := db.LookupIMEI(ctx, leaseIMEI(t, l1, 3))
		if err != nil || rec.State != store.StateVoided || rec.Reason != string(store.VoidLeaseReturned) {
			t.Fatalf("SNR below the mark never reported: %+v, %v", rec, err)
		}
		if _, err := db.LookupIMEI(ctx, leaseIMEI(t, l1, 4)); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("SNR handed back has a row: %v", err)
		}
		st := leaseOf(t, db, l1.ID)
		if st.ReturnedAt.IsZero() || st.Released != 6 || st.Relet != 0 || st.Unused != 0 || st.Bound != 2 || st.Voided != 2 {
			t.Fatalf("released lease %+v", st)
		}
		rep := mustCheck(t, db)
		if rep.ReleasedUnleased != 6 || rep.LeasedUnused != 0 || rep.IMEIs != 4 {
			t.Fatalf("check after release %+v", rep)
		}

		// Events of the released lease after its release are refused, a
		// second release too; nothing of the batch is written.
		cp = store.SiteCheckpoint{Size: 6, Hash: []byte("h6")}
		for _, ev := range []store.SiteEvent{bound(4, "d4", leaseIMEI(t, l1, 4)), bound(4, "d3", leaseIMEI(t, l1, 3)), released(4, l1.ID, 5)} {
			_, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{ev}, cp, "hq")
			wantCode(t, err, tacerr.LeaseViolation)
		}
		// A device HQ recorded from it is still the site's to revoke.
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{{Seq: 4, LeafIndex: 4, Type: store.EventIMEIRevoked, Time: time.Now(),
			IMEIs: []imei.IMEI{leaseIMEI(t, l1, 0), leaseIMEI(t, l1, 1)}, DeviceSerial: "d1", Reason: "compromised"}}, cp, "hq"); err != nil {
			t.Fatalf("revoke of a device of a released lease: %v", err)
		}
		if rec, err := db.LookupIMEI(ctx, leaseIMEI(t, l1, 0)); err != nil || rec.State != store.StateRevoked {
			t.Fatalf("revoked IMEI %+v, %v", rec, err)
		}

		// The site that released them never gets them back: s1 leases from
		// the high-water mark.
		if l := grant(t, db, "s1", 5); l.SNRStart != 10 || l.ReletOf != 0 {
			t.Fatalf("s1's next lease %+v, want SNRs 10-14 from the high-water mark", l)
		}
		// Another site takes the handed-back SNRs first: 4-7, then what is
		// left of them (8-9, smaller than asked), then the high-water mark.
		l2 := grant(t, db, "s2", 4)
		l3 := grant(t, db, "s2", 10)
		l4 := grant(t, db, "s2", 3)
		if l2.SNRStart != 4 || l2.SNREnd != 7 || l2.ReletOf != l1.ID || l3.SNRStart != 8 || l3.SNREnd != 9 || l3.ReletOf != l1.ID ||
			l4.SNRStart != 15 || l4.ReletOf != 0 {
			t.Fatalf("grants %+v %+v %+v", l2, l3, l4)
		}
		if st := leaseOf(t, db, l1.ID); st.Relet != 6 {
			t.Fatalf("released lease after re-leasing %+v", st)
		}
		rep = mustCheck(t, db)
		if rep.ReleasedUnleased != 0 || rep.LeasedUnused != 5+4+2+3 {
			t.Fatalf("check after re-leasing %+v", rep)
		}
		// s2 reports a device on a re-leased SNR: it is s2's now.
		if _, err := db.ApplySiteEvents(ctx, "s2", []store.SiteEvent{bound(1, "e1", leaseIMEI(t, l2, 0))},
			store.SiteCheckpoint{Size: 1, Hash: []byte("g1")}, "hq"); err != nil {
			t.Fatal(err)
		}
		rec, err = db.LookupIMEI(ctx, leaseIMEI(t, l2, 0))
		if err != nil || rec.Caller != "site:s2" || rec.IMEI.SNR() != 4 {
			t.Fatalf("re-leased SNR %+v, %v", rec, err)
		}

		// A release whose mark lies at or below an SNR the site reported
		// contradicts its log: refused.
		cp = store.SiteCheckpoint{Size: 3, Hash: []byte("g3")}
		_, err = db.ApplySiteEvents(ctx, "s2", []store.SiteEvent{bound(2, "e2", leaseIMEI(t, l3, 1)), released(3, l3.ID, 8)}, cp, "hq")
		if e := wantCode(t, err, tacerr.LeaseViolation); !strings.Contains(e.Message, "at or above") {
			t.Fatalf("message %q", e.Message)
		}
		// A lease used up hands nothing back (unused_from absent); one
		// released unused hands back all of it.
		if _, err := db.ApplySiteEvents(ctx, "s2", []store.SiteEvent{bound(2, "e2", leaseIMEI(t, l3, 0), leaseIMEI(t, l3, 1)),
			released(3, l3.ID, -1), released(4, l4.ID, int64(l4.SNRStart))}, cp, "hq"); err != nil {
			t.Fatal(err)
		}
		if st := leaseOf(t, db, l3.ID); st.Released != 0 || st.ReturnedAt.IsZero() || st.Bound != 2 {
			t.Fatalf("used-up lease %+v", st)
		}
		if st := leaseOf(t, db, l4.ID); st.Released != 3 || st.Unused != 0 {
			t.Fatalf("unused lease %+v", st)
		}
		// l4's SNRs (15-17) go to s1 now, even at the same start.
		if l := grant(t, db, "s1", 3); l.SNRStart != l4.SNRStart || l.SNREnd != l4.SNREnd || l.ReletOf != l4.ID {
			t.Fatalf("re-lease of an unused lease %+v", l)
		}
		mustCheck(t, db)

		// A forced return (dead site) voids every unreported SNR and hands
		// nothing back.
		n, err := db.ReturnLease(ctx, l2.ID, "test")
		if err != nil || n != 3 {
			t.Fatalf("forced return = %d, %v", n, err)
		}
		if st := leaseOf(t, db, l2.ID); st.Released != 0 || st.Voided != 3 {
			t.Fatalf("forced return %+v", st)
		}
		rep = mustCheck(t, db)
		if rep.ReleasedUnleased != 0 {
			t.Fatalf("check after forced return %+v", rep)
		}

		// A lease's release is fixed once recorded (trigger).
		err = db.InTx(ctx, func(tx *store.Tx) error {
			_, err := storetest.Exec(tx, `UPDATE leases SET released_from = 5 WHERE id = ?`, l1.ID)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), "returned once") {
			t.Fatalf("moving a release mark: %v", err)
		}
	})
}

// TestLeaseReturnRequest: lease return without --force only records the
// request, which the site reads in its status.
func TestLeaseReturnRequest(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		l := grant(t, db, "s1", 10)
		for range 2 {
			if err := db.RequestLeaseReturn(ctx, l.ID, "test"); err != nil {
				t.Fatal(err)
			}
		}
		st := leaseOf(t, db, l.ID)
		if st.ReturnRequestedAt.IsZero() || !st.ReturnedAt.IsZero() || st.Unused != 10 {
			t.Fatalf("lease after a return request %+v", st)
		}
		wantCode(t, db.RequestLeaseReturn(ctx, 999, "test"), tacerr.NotFound)
		if _, err := db.ReturnLease(ctx, l.ID, "test"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, db.RequestLeaseReturn(ctx, l.ID, "test"), tacerr.InvalidState)
	})
}

// TestLeaseLimits: HQ's bounds refuse a grant naming the field and the
// setting, and change nothing.
func TestLeaseLimits(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		lim := store.LeaseLimits{MaxSize: 10, MaxTTL: time.Hour, MaxHeld: 2}
		for _, tc := range []struct {
			name, field, setting string
			size                 int64
			ttl                  time.Duration
			code                 tacerr.Code
		}{
			{"too large", "size", "hq.lease.max_size", 11, time.Hour, tacerr.InvalidInput},
			{"too long", "ttl", "hq.lease.max_ttl", 5, 2 * time.Hour, tacerr.InvalidInput},
		} {
			_, err := db.GrantLease(ctx, "s1", "A", tc.size, tc.ttl, lim, "test")
			if e := wantCode(t, err, tc.code); e.Field != tc.field || !strings.Contains(e.Message, tc.setting) {
				t.Fatalf("%s: %+v", tc.name, e)
			}
		}
		for range 2 {
			if _, err := db.GrantLease(ctx, "s1", "A", 10, time.Hour, lim, "test"); err != nil {
				t.Fatal(err)
			}
		}
		_, err := db.GrantLease(ctx, "s1", "A", 10, time.Hour, lim, "test")
		if e := wantCode(t, err, tacerr.Conflict); !strings.Contains(e.Message, "hq.lease.max_held") {
			t.Fatalf("third lease: %+v", e)
		}
		if ls, err := db.Leases(ctx, "s1"); err != nil || len(ls) != 2 {
			t.Fatalf("leases %d, %v", len(ls), err)
		}
		if p, err := db.Pool(ctx, "A"); err != nil || p.NextSNR != 20 {
			t.Fatalf("pool after refusals %+v, %v", p, err)
		}
	})
}

// TestCheckFindsOverlappingLeases: an SNR in two leases is a violation.
func TestCheckFindsOverlappingLeases(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		enrollSite(t, db, "s2")
		l := grant(t, db, "s1", 10)
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			_, err := storetest.Exec(tx, `INSERT INTO leases (site, pool_id, tac, snr_start, snr_end, granted_at, expires_at)
				SELECT 's2', pool_id, tac, 5, 9, granted_at, expires_at FROM leases WHERE id = ?`, l.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		rep, err := db.Check(ctx)
		if err != nil || rep.OK() || !strings.Contains(strings.Join(rep.Violations, "\n"), "lies in lease") {
			t.Fatalf("check %+v, %v", rep, err)
		}
	})
}

// TestReleaseHeldLease: at a site, a release closes the lease's pool at
// once (a reservation naming it finds no pool, the next lease is chosen),
// waits for reservations in flight, then writes lease.released with the
// first SNR never reserved into the site outbox, once.
func TestReleaseHeldLease(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		siteSinks(t, db)
		seed(t, db, 0, 9) // the site's catalogue (pool A is not a lease)
		now := db.Now()
		holdLease(t, db, 7, 100, 109)
		holdLease(t, db, 8, 200, 209)
		p, err := db.HeldLeasePool(ctx, "hq", now)
		if err != nil || p.Name != "hq.lease7" {
			t.Fatalf("held lease pool %+v, %v", p, err)
		}
		r, err := reserve(db, "r1", p.Name, 2) // SNRs 100-101, in flight
		if err != nil {
			t.Fatal(err)
		}
		rel, err := db.ReleaseHeldLease(ctx, 7, "operator", "test")
		if err != nil || rel.Released || rel.InFlight != 2 || rel.UnusedFrom != 102 || rel.Unused != 8 {
			t.Fatalf("release with reservations in flight = %+v, %v", rel, err)
		}
		// Closed: no new reservation from it, the provisioner's choice
		// moves on to the next lease.
		if _, err := reserve(db, "r2", "hq.lease7", 2); !tacerr.Is(err, tacerr.PoolNotFound) {
			t.Fatalf("reserve from a closed lease: %v", err)
		}
		if p, err := db.HeldLeasePool(ctx, "hq", now); err != nil || p.Name != "hq.lease8" {
			t.Fatalf("held lease pool after closing %+v, %v", p, err)
		}
		if n, err := db.SiteOutboxPending(ctx); err != nil || n != 0 {
			t.Fatalf("outbox before the release completes: %d, %v", n, err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			return tx.Void(r.Devices[0], "abandoned", "", "test", "r1")
		}); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second call changes nothing
			rel, err = db.ReleaseHeldLease(ctx, 7, "operator", "test")
			if err != nil || !rel.Released || rel.InFlight != 0 || rel.UnusedFrom != 102 || rel.Unused != 8 {
				t.Fatalf("release = %+v, %v", rel, err)
			}
		}
		evs, err := db.PendingSiteEvents(ctx, 0, 10)
		if err != nil || len(evs) != 2 || evs[0].Type != store.EventIMEIVoided || evs[1].Type != store.EventLeaseReleased ||
			evs[1].Lease != 7 || evs[1].UnusedFrom != "000102" {
			t.Fatalf("outbox %+v, %v", evs, err)
		}
		held, err := db.HeldLeases(ctx)
		if err != nil || len(held) != 2 || held[0].ReleasedAt.IsZero() || held[0].Free != 0 || held[0].Pool.Name != "hq.lease7.released" {
			t.Fatalf("held leases %+v, %v", held, err)
		}
		// A lease used up hands nothing back: unused_from absent.
		if _, err := reserve(db, "r3", "hq.lease8", 5); err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "r4", "hq.lease8", 5); err != nil {
			t.Fatal(err)
		}
		// (Its reservations stay RESERVED: the release waits.)
		if rel, err := db.ReleaseHeldLease(ctx, 8, "expired", "test"); err != nil || rel.Released || rel.Unused != 0 || rel.InFlight != 10 {
			t.Fatalf("release of a used-up lease = %+v, %v", rel, err)
		}
		wantCode(t, func() error { _, err := db.ReleaseHeldLease(ctx, 99, "x", "test"); return err }(), tacerr.NotFound)
		mustCheck(t, db)
	})
}

// TestReleaseHeldLeaseConcurrent: releases of one lease at once (the
// site's loop and an operator's command) all succeed and write one
// lease.released.
func TestReleaseHeldLeaseConcurrent(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		siteSinks(t, db)
		seed(t, db, 0, 9)
		holdLease(t, db, 3, 100, 199)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				_, err := db.ReleaseHeldLease(ctx, 3, "operator", "test")
				errs <- err
			}()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		evs, err := db.PendingSiteEvents(ctx, 0, 10)
		if err != nil || len(evs) != 1 || evs[0].Type != store.EventLeaseReleased || evs[0].UnusedFrom != "000100" {
			t.Fatalf("outbox %+v, %v", evs, err)
		}
	})
}

// TestConcurrentGrantsRelet: grants at once take the handed-back SNRs and
// then the high-water mark without two leases sharing an SNR.
func TestConcurrentGrantsRelet(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 999)
		enrollSite(t, db, "s1")
		enrollSite(t, db, "s2")
		l := grant(t, db, "s1", 100)
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(1, l.ID, 0)}, store.SiteCheckpoint{Size: 1, Hash: []byte("h")}, "hq"); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				_, err := db.GrantLease(ctx, "s2", "A", 30, time.Hour, store.LeaseLimits{}, "test")
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		rep := mustCheck(t, db)
		// 100 handed back: three blocks of 30 and one of 10, then four of
		// 30 from the high-water mark.
		if rep.ReleasedUnleased != 0 || rep.LeasedUnused != 100+4*30 || rep.Leases != 9 {
			t.Fatalf("check %+v", rep)
		}
	})
}

// TestLeaseReturnsMigration: a ledger with released and re-leased leases
// goes down to the schema before 0013 and up again (SQLite drops the new
// columns, one with a foreign key); its leases keep their ranges. (The
// release marks do not survive a down migration.)
func TestLeaseReturnsMigration(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		enrollSite(t, db, "s2")
		l := grant(t, db, "s1", 10)
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(1, l.ID, 5)}, store.SiteCheckpoint{Size: 1, Hash: []byte("h")}, "hq"); err != nil {
			t.Fatal(err)
		}
		grant(t, db, "s2", 3)
		if err := db.MigrateDownTo(ctx, 12); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		ls, err := db.Leases(ctx, "")
		if err != nil || len(ls) != 2 || ls[1].SNRStart != 5 || ls[1].SNREnd != 7 {
			t.Fatalf("leases after down and up %+v, %v", ls, err)
		}
	})
}

// holdLease records at a site HQ's lease id of HQ pool "hq" over SNRs
// lo-hi, for an hour.
func holdLease(t *testing.T, db *store.DB, id int64, lo, hi uint32) {
	t.Helper()
	now := db.Now()
	if err := db.RecordHeldLease(context.Background(), store.HeldLease{LeaseID: id, HQPool: "hq", HQSNRStart: 0, HQSNREnd: 999, GrantedAt: now,
		ExpiresAt: now.Add(time.Hour), Pool: store.Pool{TAC: testTAC, SNRStart: lo, SNREnd: hi, Factory: "F1", Product: "EX-1", Market: "DE"}}, "test"); err != nil {
		t.Fatal(err)
	}
}

// siteSinks attaches a site's sinks: the audit log (no signing key: no
// checkpoints needed), then the site outbox, which reads its leaf indexes.
func siteSinks(t *testing.T, db *store.DB) {
	t.Helper()
	l, err := audit.New(db, audit.Config{Origin: "s.example/log", KeyLabel: "k"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	db.AddSink(store.SiteOutbox{})
}

// TestForcedReturnInChunks: `lease return --force` works in chunks that
// each commit: after every chunk ledger check passes and the lease is still
// held; interrupted after three chunks, the voided SNRs stay voided, the
// site's event for an SNR not voided yet still applies and one for a
// voided SNR is refused; the next forced return voids only the rest and
// ends the lease; a third answers invalid_state. A release the site proves
// between two chunks ends the lease first, and the forced return stops
// with invalid_state, leaving a consistent ledger.
func TestForcedReturnInChunks(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 999)
		enrollSite(t, db, "s1")
		l := grant(t, db, "s1", 100) // SNRs 0-99
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			bound(1, "d1", leaseIMEI(t, l, 0), leaseIMEI(t, l, 1)),
			bound(2, "d2", leaseIMEI(t, l, 57)),
		}, store.SiteCheckpoint{Size: 3, Hash: []byte("h3")}, "hq"); err != nil {
			t.Fatal(err)
		}

		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var seen []store.ReturnProgress
		n, err := db.ReturnLeaseChunks(cctx, l.ID, "test", 10, func(p store.ReturnProgress) {
			seen = append(seen, p)
			mustCheck(t, db)
			if st := leaseOf(t, db, l.ID); !st.ReturnedAt.IsZero() {
				t.Fatalf("lease returned after chunk %d of 10", len(seen))
			}
			if len(seen) == 3 {
				cancel() // an operator's Ctrl-C, or a crash, after three chunks
			}
		})
		if e := wantCode(t, err, tacerr.Unavailable); !strings.Contains(e.Message, "lease return --force") {
			t.Fatalf("message %q", e.Message)
		}
		if n != 28 || len(seen) != 3 || seen[2] != (store.ReturnProgress{Lease: l.ID, Done: 30, Total: 100, Voided: 28}) {
			t.Fatalf("interrupted: voided %d, progress %+v", n, seen)
		}
		rep := mustCheck(t, db)
		if rep.LeasedUnused != 69 {
			t.Fatalf("check after the interruption %+v", rep)
		}
		// The lease is still held: the site's SNR 40 applies, SNR 5 (voided) is refused.
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(3, "d3", leaseIMEI(t, l, 40))}, store.SiteCheckpoint{Size: 4, Hash: []byte("h4")}, "hq"); err != nil {
			t.Fatal(err)
		}
		_, err = db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{bound(4, "d4", leaseIMEI(t, l, 5))}, store.SiteCheckpoint{Size: 5, Hash: []byte("h5")}, "hq")
		wantCode(t, err, tacerr.LeaseViolation)

		seen = nil
		n, err = db.ReturnLeaseChunks(ctx, l.ID, "test", 10, func(p store.ReturnProgress) {
			seen = append(seen, p)
			mustCheck(t, db)
		})
		if err != nil || n != 68 || len(seen) != 10 {
			t.Fatalf("resumed: voided %d, %d chunks, %v", n, len(seen), err)
		}
		st := leaseOf(t, db, l.ID)
		if st.ReturnedAt.IsZero() || st.Voided != 96 || st.Bound != 4 || st.Unused != 0 {
			t.Fatalf("returned lease %+v", st)
		}
		if rep := mustCheck(t, db); rep.LeasedUnused != 0 || rep.IMEIs != 100 {
			t.Fatalf("check after the return %+v", rep)
		}
		if _, err := db.ReturnLease(ctx, l.ID, "test"); !tacerr.Is(err, tacerr.InvalidState) {
			t.Fatalf("third forced return: %v", err)
		}

		// A release proven between two chunks: it ends the lease (its mark,
		// SNR 30 of the lease, above the chunks voided so far).
		l2 := grant(t, db, "s1", 50)
		seen = nil
		_, err = db.ReturnLeaseChunks(ctx, l2.ID, "test", 10, func(p store.ReturnProgress) {
			seen = append(seen, p)
			if len(seen) == 2 {
				if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(5, l2.ID, int64(l2.SNRStart)+30)},
					store.SiteCheckpoint{Size: 6, Hash: []byte("h6")}, "hq"); err != nil {
					t.Fatal(err)
				}
			}
		})
		if !tacerr.Is(err, tacerr.InvalidState) || len(seen) != 2 {
			t.Fatalf("forced return after the site's release: %v after %d chunks", err, len(seen))
		}
		if st := leaseOf(t, db, l2.ID); st.ReturnedAt.IsZero() || st.Voided != 30 || st.Released != 20 {
			t.Fatalf("released lease %+v", st)
		}
		mustCheck(t, db)
	})
}

// leaseBoundAt3 is a lease of 100 SNRs granted to site s1, which reported
// its SNR 3 bound.
func leaseBoundAt3(t *testing.T, db *store.DB) store.Lease {
	t.Helper()
	seed(t, db, 0, 999)
	enrollSite(t, db, "s1")
	l := grant(t, db, "s1", 100)
	if _, err := db.ApplySiteEvents(context.Background(), "s1", []store.SiteEvent{bound(1, "d1", leaseIMEI(t, l, 3))},
		store.SiteCheckpoint{Size: 1, Hash: []byte("h1")}, "hq"); err != nil {
		t.Fatal(err)
	}
	return l
}

// interruptForcedReturn runs a forced return of lease id in chunks of 10
// SNRs, interrupted after its second chunk, and returns what it voided.
func interruptForcedReturn(t *testing.T, db *store.DB, id int64) int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chunks := 0
	n, err := db.ReturnLeaseChunks(ctx, id, "test", 10, func(store.ReturnProgress) {
		if chunks++; chunks == 2 {
			cancel()
		}
	})
	wantCode(t, err, tacerr.Unavailable)
	return n
}

// TestForcedReturnShownUntilFinished: an interrupted forced return leaves
// the lease held with some SNRs voided; Leases says a forced return began
// (when its first chunk committed) and how many SNRs it voided so far,
// until a run of it ends the lease, which keeps the start. Migration 0025
// gives a lease interrupted before it the time of its first voided SNR.
func TestForcedReturnShownUntilFinished(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := leaseBoundAt3(t, db)
		if st := leaseOf(t, db, l.ID); !st.ForcedAt.IsZero() || st.ForcedVoided != 0 {
			t.Fatalf("a lease no forced return touched: %+v", st)
		}
		interrupt := func() { interruptForcedReturn(t, db, l.ID) }
		before := db.Now().Truncate(time.Microsecond)
		interrupt()
		st := leaseOf(t, db, l.ID)
		if st.ForcedAt.Before(before) || !st.ReturnedAt.IsZero() || st.ForcedVoided != 19 || st.Voided != 19 {
			t.Fatalf("after an interrupted forced return: %+v, want it started, unfinished, 19 voided", st)
		}
		started := st.ForcedAt

		// Interrupted before migration 0025: the migration finds it.
		if err := db.MigrateDownTo(ctx, 24); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if st := leaseOf(t, db, l.ID); !st.ForcedAt.Equal(started) || st.ForcedVoided != 19 {
			t.Fatalf("after migration 0025 again: %+v, want started at %s", st, started)
		}

		interrupt() // a second run, interrupted in the same chunks: the start stays the first's
		if st := leaseOf(t, db, l.ID); !st.ForcedAt.Equal(started) || st.ForcedVoided != 19 || !st.ReturnedAt.IsZero() {
			t.Fatalf("after a second interrupted run: %+v", st)
		}
		if _, err := db.ReturnLease(ctx, l.ID, "test"); err != nil {
			t.Fatal(err)
		}
		if st := leaseOf(t, db, l.ID); !st.ForcedAt.Equal(started) || st.ReturnedAt.IsZero() || st.ForcedVoided != 99 {
			t.Fatalf("after the run that finished it: %+v", st)
		}
		mustCheck(t, db)
	})
}

// TestForcedVoidedCountsOnlyTheForcedReturn: a site's release that ends a
// lease while its forced return is unfinished voids the SNRs below its
// mark that HQ never heard of, with the forced return's reason
// (lease_returned); the lease's ForcedVoided still counts only the SNRs
// the forced return voided. Migration 0026, run again, gives such a lease
// the old count (every lease_returned SNR: nothing else tells them apart).
func TestForcedVoidedCountsOnlyTheForcedReturn(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l := leaseBoundAt3(t, db)
		if n := interruptForcedReturn(t, db, l.ID); n != 19 { // SNRs 0-19 but the bound 3
			t.Fatalf("the interrupted forced return voided %d, want 19", n)
		}
		// The site releases from SNR 50: HQ voids 20-49, never reported.
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(2, l.ID, int64(l.SNRStart)+50)},
			store.SiteCheckpoint{Size: 2, Hash: []byte("h2")}, "hq"); err != nil {
			t.Fatal(err)
		}
		st := leaseOf(t, db, l.ID)
		if st.ReturnedAt.IsZero() || st.ForcedAt.IsZero() || st.Voided != 49 || st.ForcedVoided != 19 {
			t.Fatalf("after the release: %+v, want returned, 49 voided, 19 of them by the forced return", st)
		}
		if _, err := db.ReturnLease(ctx, l.ID, "test"); !tacerr.Is(err, tacerr.InvalidState) {
			t.Fatalf("forced return after the release: %v, want invalid_state", err)
		}
		if err := db.MigrateDownTo(ctx, 25); err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if st := leaseOf(t, db, l.ID); st.ForcedVoided != 49 {
			t.Fatalf("after migration 0026 again: %+v, want the old count 49", st)
		}
		mustCheck(t, db)
	})
}

// TestForcedReturnChunkAndReleaseSerialise: on PostgreSQL a forced
// return's chunk and the site's release of the same lease serialise on the
// lease's row. The chunk waits first, then the release; the chunk voids
// SNRs above the release's mark and commits, and the release, counting
// those after the chunk committed, is refused (lease_violation) instead of
// handing back SNRs that now have rows: ledger check passes. A transaction
// of the test holds the lease's row while both line up (their backends
// are seen waiting for a lock in pg_stat_activity, so no timing decides).
func TestForcedReturnChunkAndReleaseSerialise(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.Postgres)
	seed(t, db, 0, 99)
	enrollSite(t, db, "s1")
	l := grant(t, db, "s1", 20) // SNRs 0-19
	var ims []store.SiteEvent
	for i := range 5 { // the site reported SNRs 0-4: its release voids nothing below its mark 5
		ims = append(ims, bound(int64(i+1), "d"+string(rune('a'+i)), leaseIMEI(t, l, i)))
	}
	if _, err := db.ApplySiteEvents(ctx, "s1", ims, store.SiteCheckpoint{Size: 6, Hash: []byte("h6")}, "hq"); err != nil {
		t.Fatal(err)
	}
	waiting := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			var k int
			if err := storetest.Reader(db).Get(&k, `SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`); err != nil {
				t.Fatal(err)
			}
			if k >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d transactions wait for a lock, want %d", k, n)
			}
		}
	}
	locked, done := make(chan struct{}), make(chan struct{})
	holder := make(chan error, 1)
	go func() {
		holder <- db.InTx(ctx, func(tx *store.Tx) error {
			if _, err := storetest.Exec(tx, `SELECT id FROM leases WHERE id = ? FOR UPDATE`, l.ID); err != nil {
				return err
			}
			close(locked)
			<-done
			return nil
		})
	}()
	<-locked
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		n   int64
		err error
	}
	chunk := make(chan result, 1)
	go func() {
		n, err := db.ReturnLeaseChunks(cctx, l.ID, "test", 10, func(store.ReturnProgress) { cancel() }) // one chunk: SNRs 0-9
		chunk <- result{n, err}
	}()
	waiting(1)
	release := make(chan error, 1)
	go func() {
		_, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(6, l.ID, int64(l.SNRStart)+5)}, store.SiteCheckpoint{Size: 7, Hash: []byte("h7")}, "hq")
		release <- err
	}()
	waiting(2)
	close(done)
	if err := <-holder; err != nil {
		t.Fatal(err)
	}
	if r := <-chunk; r.n != 5 || !tacerr.Is(r.err, tacerr.Unavailable) {
		t.Fatalf("the chunk voided %d, %v; want 5 (SNRs 5-9), then interrupted", r.n, r.err)
	}
	if err := <-release; !tacerr.Is(err, tacerr.LeaseViolation) {
		t.Fatalf("the release after the chunk: %v, want lease_violation (SNRs at or above its mark have rows)", err)
	}
	if st := leaseOf(t, db, l.ID); !st.ReturnedAt.IsZero() {
		t.Fatalf("lease %+v returned", st)
	}
	mustCheck(t, db)
}
