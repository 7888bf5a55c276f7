package site_test

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// lostLeaseHQ loses the answer of the first lease HQ grants (a connection
// cut, or a timeout, after HQ's commit).
type lostLeaseHQ struct {
	localHQ
	lost *int
}

func (l lostLeaseHQ) Lease(ctx context.Context, req wire.LeaseRequest) (wire.Lease, error) {
	res, err := l.localHQ.Lease(ctx, req)
	if err == nil && *l.lost == 0 {
		*l.lost++
		return wire.Lease{}, tacerr.New(tacerr.Unavailable, "answer lost")
	}
	return res, err
}

// firstLeaseLost is HQ and a site whose first lease request HQ granted
// and whose answer was lost.
func firstLeaseLost(t *testing.T) (*store.DB, siteEnv) {
	t.Helper()
	siteKey := key(t)
	hqDB, hq := newHQ(t, siteKey)
	lost := 0
	se := newSiteAt(t, siteKey, lostLeaseHQ{localHQ{hq, "s1"}, &lost}, "")
	if err := se.s.EnsureLeases(context.Background()); !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("the first lease request: %v, want the lost answer", err)
	}
	return hqDB, se
}

// TestSiteLeaseAnswerLost: HQ grants a lease and the answer is lost; the
// site asks again with the same request id and records that very lease:
// HQ holds one lease for the site, not an orphan beside a second one.
func TestSiteLeaseAnswerLost(t *testing.T) {
	ctx := context.Background()
	hqDB, se := firstLeaseLost(t)
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err := hqDB.Leases(ctx, "s1")
	if err != nil || len(ls) != 1 {
		t.Fatalf("HQ's leases of s1 = %+v, %v; want one", ls, err)
	}
	held, err := se.env.DB.HeldLeases(ctx)
	if err != nil || len(held) != 1 || held[0].LeaseID != ls[0].ID {
		t.Fatalf("the site holds %+v, %v; want HQ's lease %d", held, err, ls[0].ID)
	}
	if err := se.env.DB.EnrollStation(ctx, store.StationRecord{ID: "SS", Factory: "F9", Line: "L1", Pools: []string{"HQ-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := se.s.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := se.provision(t, "dev-1"); err != nil {
		t.Fatalf("provision from the lease: %v", err)
	}
}

// TestSiteLeaseAskRefused: HQ granted a lease whose answer was lost, and
// an operator returned it before the site asked again; HQ refuses the
// request id (conflict on request_id), the site forgets it, and its next
// request, with a new id, gets a new lease.
func TestSiteLeaseAskRefused(t *testing.T) {
	ctx := context.Background()
	hqDB, se := firstLeaseLost(t)
	first, err := hqDB.Leases(ctx, "s1")
	if err != nil || len(first) != 1 {
		t.Fatalf("HQ's leases of s1 = %+v, %v; want one", first, err)
	}
	if _, err := hqDB.ReturnLease(ctx, first[0].ID, "test"); err != nil {
		t.Fatal(err)
	}
	err = se.s.EnsureLeases(ctx)
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Conflict || e.Field != "request_id" {
		t.Fatalf("asking again for the returned lease: %v, want conflict on request_id", err)
	}
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatalf("the request after the refusal: %v", err)
	}
	ls, err := hqDB.Leases(ctx, "s1")
	if err != nil || len(ls) != 2 {
		t.Fatalf("HQ's leases of s1 = %+v, %v; want the returned one and a new one", ls, err)
	}
	held, err := se.env.DB.HeldLeases(ctx)
	if err != nil || len(held) != 1 || held[0].LeaseID != ls[1].ID {
		t.Fatalf("the site holds %+v, %v; want HQ's new lease %d", held, err, ls[1].ID)
	}
}

// TestSiteFetchesOperatorLease: a lease an operator granted at HQ waits
// for the site, which asks for it at its next pass although its pool is
// not low, and records it; HQ's status then shows nothing waiting.
func TestSiteFetchesOperatorLease(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	hqDB, hq := newHQ(t, siteKey)
	se := newSite(t, siteKey, hq)
	if err := se.s.EnsureLeases(ctx); err != nil { // the site's own first lease
		t.Fatal(err)
	}
	if err := se.s.EnsureLeases(ctx); err != nil { // not low: nothing asked
		t.Fatal(err)
	}
	if ls, err := hqDB.Leases(ctx, "s1"); err != nil || len(ls) != 1 {
		t.Fatalf("HQ's leases of s1 = %+v, %v; want one", ls, err)
	}
	op, err := hqDB.GrantLease(ctx, "s1", "HQ-A", 50, time.Hour, store.LeaseLimits{}, "operator")
	if err != nil {
		t.Fatal(err)
	}
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := se.env.DB.HeldLeases(ctx)
	if err != nil || len(held) != 2 || held[1].LeaseID != op.ID || held[1].Pool.SNREnd-held[1].Pool.SNRStart != 49 {
		t.Fatalf("the site holds %+v, %v; want its first lease and the operator's %d", held, err, op.ID)
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || len(st.Leases) != 2 || st.Leases[0].Waiting || st.Leases[1].Waiting {
		t.Fatalf("HQ's status of s1 = %+v, %v; want two leases, none waiting", st, err)
	}
}
