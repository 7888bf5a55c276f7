package site_test

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// localHQ is HQ's real logic (site.HQ over a real ledger) without the
// HTTP transport, which api's TestSitesAPI covers.
type localHQ struct {
	hq   *site.HQ
	name string
}

func (l localHQ) Lease(ctx context.Context, req wire.LeaseRequest) (wire.Lease, error) {
	return l.hq.GrantLease(ctx, l.name, req)
}

func (l localHQ) Sync(ctx context.Context, req wire.SiteSyncRequest) (wire.SiteSyncResponse, error) {
	return l.hq.Sync(ctx, l.name, req)
}

func (l localHQ) Status(ctx context.Context) (wire.SiteStatus, error) {
	return l.hq.Status(ctx, l.name)
}

// lossyHQ loses the answer of a sync HQ applied while lose is set (a
// connection cut, or HQ killed, after its commit).
type lossyHQ struct {
	localHQ
	lose *bool
}

func (l lossyHQ) Sync(ctx context.Context, req wire.SiteSyncRequest) (wire.SiteSyncResponse, error) {
	res, err := l.localHQ.Sync(ctx, req)
	if err == nil && *l.lose {
		return wire.SiteSyncResponse{}, tacerr.New(tacerr.Unavailable, "answer lost")
	}
	return res, err
}

const siteTAC = 100110

var siteTACRecord = catalog.TAC{TAC: siteTAC, Brand: provtest.Manufacturer, ModelName: "EX-L", DeviceType: "Smartphone",
	RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 2, AllocationDate: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
	Approvals: []catalog.Approval{{Market: "DE", Reference: "DE-L", ValidFrom: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}}}

// newHQ is a headquarters ledger with pool HQ-A and site s1 enrolled.
func newHQ(t *testing.T, siteKey *ecdsa.PrivateKey) (*store.DB, *site.HQ) {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	if err := db.AddTACs(ctx, []catalog.TAC{siteTACRecord}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreatePool(ctx, store.Pool{Name: "HQ-A", TAC: siteTAC, SNRStart: 0, SNREnd: 999, Factory: "F9", Line: "L1",
		Product: "EX-L", Market: "DE"}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := db.EnrollSite(ctx, store.Site{Name: "s1", Verifier: mustVKey(t, "s1.example/tacline-audit", siteKey), Pools: []string{"HQ-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	hq, err := site.NewHQ(db, witness(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	return db, hq
}

// siteEnv is a site: a provisioner in site mode over real SoftHSM2
// signers, its audit log and sync outbox, and its site.Site.
type siteEnv struct {
	env      *provtest.Env
	s        *site.Site
	cosigned string // the file of HQ's cosigned checkpoint
	log      *audit.Log
}

func newSite(t *testing.T, siteKey *ecdsa.PrivateKey, hq *site.HQ, lose ...*bool) siteEnv {
	t.Helper()
	return newSiteAt(t, siteKey, localHQ{hq, "s1"}, "", lose...)
}

// newSiteAt is newSite talking to client, keeping HQ's cosigned
// checkpoint in the file cosigned too ("": a fresh file).
func newSiteAt(t *testing.T, siteKey *ecdsa.PrivateKey, client site.HQClient, cosigned string, lose ...*bool) siteEnv {
	t.Helper()
	if cosigned == "" {
		cosigned = filepath.Join(t.TempDir(), "checkpoint.cosigned")
	}
	var s *site.Site
	env := provtest.New(t, store.SQLite, provtest.WithSiteLeases(func() error { return s.Ready() }))
	if err := env.DB.AddTACs(context.Background(), []catalog.TAC{siteTACRecord}, "test"); err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(env.DB, audit.Config{Origin: "s1.example/tacline-audit", KeyLabel: "audit", CheckpointEvery: 1 << 30,
		CheckpointInterval: time.Hour}, siteKey)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	env.DB.AddSink(store.SiteOutbox{})
	if len(lose) > 0 {
		client = lossyHQ{client.(localHQ), lose[0]}
	}
	s, err = site.New(site.Config{Name: "s1", Pools: []site.PoolPolicy{{Pool: "HQ-A", LeaseSize: 10}}, LowWaterHours: 1,
		WitnessKey: witness(t).Verifier().Key(), CosignedCheckpoint: cosigned}, env.DB, l, client, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return siteEnv{env, s, cosigned, l}
}

func (se siteEnv) provision(t *testing.T, serial string) (*provisioner.Issued, error) {
	return se.env.Service.Provision(context.Background(), provisioner.ProvisionInput{Actor: provtest.Actor("SS"), RequestID: "r-" + serial,
		DeviceSerial: serial, Pool: "HQ-A", CSR: provtest.NewDevice(t).CSR})
}

// TestSiteProvisionsOnLeases: a site refuses to issue until HQ confirmed
// it, then issues only from its lease, answers lease_exhausted when the
// lease is dry, asks for the next block, and syncs every device to HQ,
// whose ledger check and status account for every leased SNR.
func TestSiteProvisionsOnLeases(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	hqDB, hq := newHQ(t, siteKey)
	lose := false
	se := newSite(t, siteKey, hq, &lose)
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	if err := se.env.DB.EnrollStation(ctx, store.StationRecord{ID: "SS", Factory: "F9", Line: "L1", Pools: []string{"HQ-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := se.provision(t, "D0"); !tacerr.Is(err, tacerr.SiteNotCurrent) || !tacerr.IsRetryable(err) {
		t.Fatalf("before HQ confirmed the site: %v", err)
	}
	if err := se.s.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	// Lease 1 holds SNRs 0-9: five devices of two IMEIs.
	for i := range 5 {
		iss, err := se.provision(t, fmt.Sprintf("D%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if iss.IMEIs[0].TAC() != siteTAC || iss.IMEIs[1].SNR() > 9 {
			t.Fatalf("device %d got %v outside lease 1", i, iss.IMEIs)
		}
	}
	if _, err := se.provision(t, "D5"); !tacerr.Is(err, tacerr.LeaseExhausted) || !tacerr.IsRetryable(err) {
		t.Fatalf("dry lease: %v", err)
	}
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	iss, err := se.provision(t, "D5")
	if err != nil {
		t.Fatal(err)
	}
	if snr := iss.IMEIs[0].SNR(); snr != 10 {
		t.Fatalf("first device of lease 2 got SNR %d, want 10", snr)
	}
	n, err := se.s.SyncOnce(ctx)
	if err != nil || n != 6 {
		t.Fatalf("sync = %d, %v", n, err)
	}
	// A second sync has nothing to ship.
	if n, err := se.s.SyncOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second sync = %d, %v", n, err)
	}
	// HQ applies a batch but its answer is lost: the site sends it again
	// (after reading HQ's verified size), HQ skips it, nothing is refused.
	if _, err := se.provision(t, "D6"); err != nil {
		t.Fatal(err)
	}
	lose = true
	if _, err := se.s.SyncOnce(ctx); !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("sync with a lost answer: %v", err)
	}
	lose = false
	if _, err := se.provision(t, "D7"); err != nil {
		t.Fatal(err)
	}
	if n, err := se.s.SyncOnce(ctx); err != nil || n != 2 {
		t.Fatalf("sync after a lost answer = %d, %v", n, err)
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || st.Bound != 16 || st.Unused != 4 || len(st.Leases) != 2 || !st.Consistent || st.Refusals != 0 || st.VerifiedSize == 0 {
		t.Fatalf("HQ status %+v, %v", st, err)
	}
	for _, db := range []*store.DB{hqDB, se.env.DB} {
		if rep, err := db.Check(ctx); err != nil || !rep.OK() {
			t.Fatalf("ledger check %+v, %v", rep, err)
		}
	}
	var devs []store.SiteDevice
	if err := hqDB.SiteDevices(ctx, func(d store.SiteDevice) error { devs = append(devs, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(devs) != 8 || devs[5].Site != "s1" || devs[5].DeviceSerial != "D5" || len(devs[5].IMEIs) != 2 || devs[5].IMEIs[0] != iss.IMEIs[0] {
		t.Fatalf("HQ's site devices %+v", devs)
	}
	rec, err := hqDB.LookupIMEI(ctx, iss.IMEIs[1])
	if err != nil || rec.State != store.StateBound || rec.DeviceSerial != "D5" {
		t.Fatalf("HQ row of D5: %+v, %v", rec, err)
	}

	// The same site restored from an older backup (here: an empty ledger
	// with the same key) is refused: HQ verified more of its log.
	old := newSite(t, siteKey, hq)
	if err := old.s.Confirm(ctx); !tacerr.Is(err, tacerr.SiteNotCurrent) {
		t.Fatalf("restored site: %v", err)
	}
	if err := old.s.Ready(); !tacerr.Is(err, tacerr.SiteNotCurrent) {
		t.Fatalf("restored site ready: %v", err)
	}
}
