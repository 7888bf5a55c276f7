package site_test

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// TestSiteReleasesLeases: on real SoftHSM2 signers, a lease HQ asks back
// is released by the site (closed at once, lease.released in its signed
// log), HQ applies the release from a verified sync and hands the SNRs the
// site never reserved to another site's next lease; an expired lease is
// released by the site on its own. Both ledgers check OK and no SNR
// reaches two devices.
func TestSiteReleasesLeases(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	hqDB, hq := newHQ(t, siteKey)
	se := newSite(t, siteKey, hq)
	if err := se.s.EnsureLeases(ctx); err != nil { // lease 1: SNRs 0-9
		t.Fatal(err)
	}
	if err := se.env.DB.EnrollStation(ctx, store.StationRecord{ID: "SS", Factory: "F9", Line: "L1", Pools: []string{"HQ-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := se.s.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	issued := map[uint32]string{}
	for _, d := range []string{"D0", "D1"} {
		iss, err := se.provision(t, d)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range iss.IMEIs {
			issued[m.SNR()] = d
		}
	}
	ls, err := hqDB.Leases(ctx, "s1")
	if err != nil || len(ls) != 1 {
		t.Fatalf("leases %+v, %v", ls, err)
	}
	l1 := ls[0].ID
	if err := hqDB.RequestLeaseReturn(ctx, l1, "operator"); err != nil {
		t.Fatal(err)
	}
	done, err := se.s.ReleaseLeases(ctx)
	if err != nil || len(done) != 1 || done[0].LeaseID != l1 || done[0].UnusedFrom != 4 || done[0].Unused != 6 {
		t.Fatalf("release = %+v, %v", done, err)
	}
	// The lease is closed at the site at once: nothing more from it.
	if _, err := se.provision(t, "D2"); !tacerr.Is(err, tacerr.LeaseExhausted) {
		t.Fatalf("provision after the release: %v", err)
	}
	if n, err := se.s.SyncOnce(ctx); err != nil || n != 3 {
		t.Fatalf("sync = %d, %v", n, err)
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || st.Bound != 4 || st.Released != 6 || st.Unused != 0 || st.Leases[0].ReturnedAt == nil || !st.Consistent {
		t.Fatalf("HQ status after the release %+v, %v", st, err)
	}
	// The site's next lease comes from the high-water mark; another
	// site's takes the SNRs the release handed back.
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	iss, err := se.provision(t, "D2")
	if err != nil {
		t.Fatal(err)
	}
	if snr := iss.IMEIs[0].SNR(); snr != 10 {
		t.Fatalf("s1's device after the release got SNR %d, want 10", snr)
	}
	if err := hqDB.EnrollSite(ctx, store.Site{Name: "s2", Verifier: mustVKey(t, "s2.example/tacline-audit", key(t)), Pools: []string{"HQ-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	l2, err := hq.GrantLease(ctx, "s2", wire.LeaseRequest{Pool: "HQ-A", Size: 100})
	if err != nil || l2.SNRStart != "000004" || l2.SNREnd != "000009" || l2.ReletOf != l1 {
		t.Fatalf("s2's lease %+v, %v", l2, err)
	}
	for snr := uint32(4); snr <= 9; snr++ {
		if d, ok := issued[snr]; ok {
			t.Fatalf("SNR %d re-leased to s2 is on s1's device %s", snr, d)
		}
	}

	// An expired lease is released by the site without being asked, all
	// of it unused.
	hq.Policy = site.LeasePolicy{MaxSize: 1000, DefaultTTL: time.Minute, MaxTTL: time.Hour, MaxHeld: 4}
	l3, err := hq.GrantLease(ctx, "s1", wire.LeaseRequest{Pool: "HQ-A", Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := site.RecordLease(ctx, se.env.DB, "s1", l3); err != nil {
		t.Fatal(err)
	}
	se.env.Clock.Add(time.Hour) // past its expiry
	done, err = se.s.ReleaseLeases(ctx)
	if err != nil || len(done) != 1 || done[0].LeaseID != l3.ID || done[0].Unused != 5 {
		t.Fatalf("release of an expired lease = %+v, %v", done, err)
	}
	if _, err := se.s.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err = hqDB.Leases(ctx, "s1")
	if err != nil || len(ls) != 3 || ls[2].Released != 5 || ls[2].ReturnedAt.IsZero() {
		t.Fatalf("HQ leases after the expiry %+v, %v", ls, err)
	}
	for _, db := range []*store.DB{hqDB, se.env.DB} {
		if rep, err := db.Check(ctx); err != nil || !rep.OK() {
			t.Fatalf("ledger check %+v, %v", rep, err)
		}
	}
	if rep, _ := hqDB.Check(ctx); rep.ReleasedUnleased != 5 {
		t.Fatalf("HQ check %+v: want the expired lease's 5 SNRs handed back", rep)
	}
}
