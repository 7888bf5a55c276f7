package site_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

const tac = 100010

// witness is HQ's witness (cosigner) in these tests: an Ed25519 key in
// memory (hsm's TestEd25519 covers the key in SoftHSM2).
func witness(t *testing.T) *audit.Cosigner {
	t.Helper()
	c, err := audit.NewCosigner("hq.example/tacline-audit", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func key(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// siteLog is a site's ledger with its audit log signing checkpoints.
type siteLog struct {
	db  *store.DB
	log *audit.Log
}

func newSiteLog(t *testing.T, k *ecdsa.PrivateKey) siteLog {
	t.Helper()
	db := storetest.Open(t, store.SQLite)
	l, err := audit.New(db, audit.Config{Origin: "s1.example/tacline-audit", KeyLabel: "audit", CheckpointEvery: 1 << 30,
		CheckpointInterval: time.Hour}, k)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	db.AddSink(store.SiteOutbox{})
	return siteLog{db, l}
}

// bind appends filler events and one imei.bound event per SNR (one
// transaction each, like the site's provisioner) to the site's log and
// returns a signed checkpoint over them.
func (s siteLog) bind(t *testing.T, filler int, snrs ...uint32) audit.StoredCheckpoint {
	t.Helper()
	ctx := context.Background()
	for _, snr := range snrs {
		m, _ := imei.New(tac, snr)
		if err := s.db.InTx(ctx, func(tx *store.Tx) error {
			tx.Emit(store.Event{Type: store.EventIMEIReserved, Actor: "test", RequestID: "r-" + m.String(), IMEIs: []string{m.String()}},
				store.Event{Type: store.EventIMEIBound, Actor: "test", RequestID: "r-" + m.String(), Pool: "A.lease1", TAC: m.TACString(),
					IMEIs: []string{m.String()}, DeviceSerial: "dev-" + m.String(), CertSerial: "0a"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return s.emit(t, filler)
}

// events returns the site's outbox events with the given sequence
// numbers, with their leaves and inclusion proofs in the tree of size.
func (s siteLog) events(t *testing.T, size int64, seqs ...int64) []wire.SiteEvent {
	t.Helper()
	ctx := context.Background()
	pending, err := s.db.PendingSiteEvents(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var pick []store.PendingSiteEvent
	for _, q := range seqs {
		for _, e := range pending {
			if e.Seq == q {
				pick = append(pick, e)
			}
		}
	}
	if len(pick) != len(seqs) {
		t.Fatalf("outbox holds %d of the events %v", len(pick), seqs)
	}
	evs, err := site.ProveEvents(ctx, s.db, pick, size)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// emit appends n events to the site's log and returns a signed checkpoint.
func (s siteLog) emit(t *testing.T, n int) audit.StoredCheckpoint {
	t.Helper()
	ctx := context.Background()
	if err := s.db.InTx(ctx, func(tx *store.Tx) error {
		for i := 0; i < n; i++ {
			tx.Emit(store.Event{Type: store.EventConfigChanged, Actor: "test", Attrs: map[string]string{"i": strings.Repeat("x", i)}})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func (s siteLog) proof(t *testing.T, from, to int64) []string {
	t.Helper()
	p, err := audit.ConsistencyProof(context.Background(), s.db, from, to)
	if err != nil {
		t.Fatal(err)
	}
	return site.EncodeHashes(p)
}

func hqLedger(t *testing.T, siteKey *ecdsa.PrivateKey) (*store.DB, store.Lease) {
	t.Helper()
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	err := db.AddTACs(ctx, []catalog.TAC{{TAC: tac, Brand: "Example", ModelName: "EX-1", DeviceType: "Smartphone",
		RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 1, AllocationDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreatePool(ctx, store.Pool{Name: "A", TAC: tac, SNRStart: 0, SNREnd: 999}, "test"); err != nil {
		t.Fatal(err)
	}
	vkey, err := audit.VerifierKey("s1.example/tacline-audit", &siteKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.EnrollSite(ctx, store.Site{Name: "s1", Verifier: vkey, Pools: []string{"A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	l, err := db.GrantLease(ctx, "s1", "A", 100, time.Hour, store.LeaseLimits{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return db, l
}

// hqEnv is HQ with its witness key over hqLedger's ledger, its metrics in
// reg, and the audit log of site s1.
type hqEnv struct {
	db    *store.DB
	lease store.Lease
	hq    *site.HQ
	reg   *prometheus.Registry
	log   siteLog
}

func newHQEnv(t *testing.T) hqEnv {
	t.Helper()
	siteKey := key(t)
	db, lease := hqLedger(t, siteKey)
	reg := prometheus.NewRegistry()
	hq, err := site.NewHQ(db, witness(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	return hqEnv{db: db, lease: lease, hq: hq, reg: reg, log: newSiteLog(t, siteKey)}
}

// TestSync: consistent checkpoints are applied and cosigned; a rewritten
// log, an old checkpoint and an IMEI outside the site's leases are refused,
// counted and recorded, and nothing of the batch is applied.
func TestSync(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	hqDB, lease := hqLedger(t, siteKey)
	cosigner := witness(t)
	reg := prometheus.NewRegistry()
	hq, err := site.NewHQ(hqDB, cosigner, reg)
	if err != nil {
		t.Fatal(err)
	}
	s := newSiteLog(t, siteKey)
	cp1 := s.bind(t, 1, lease.SNRStart, lease.SNRStart+1) // leaves 0-4, events 1 and 2
	res, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp1.Size, 1, 2), Checkpoint: string(cp1.Note)})
	if err != nil || res.Applied != 2 || res.VerifiedSize != 5 {
		t.Fatalf("first sync = %+v, %v", res, err)
	}
	// The cosigned note verifies under both keys: the site's signature
	// and HQ's tlog-cosignature/v1.
	siteV, _ := audit.ParseVerifierKey(mustVKey(t, "s1.example/tacline-audit", siteKey))
	if c, err := audit.OpenCosigned([]byte(res.Cosigned), siteV, cosigner.Verifier()); err != nil || c.Size != 5 || time.Since(c.Time) > time.Hour {
		t.Fatalf("cosigned note: %+v, %v", c, err)
	}
	if n, _ := note.Open([]byte(res.Cosigned), note.VerifierList(siteV, cosigner.Verifier())); len(n.Sigs) != 2 {
		t.Fatalf("cosigned note has %d signatures, want 2", len(n.Sigs))
	}
	// A cosignature by another witness key does not verify.
	otherW, _ := audit.NewCosigner("hq.example/tacline-audit", ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), nil)
	if _, err := audit.OpenCosigned([]byte(res.Cosigned), siteV, otherW.Verifier()); err == nil {
		t.Fatal("cosignature verified under another witness key")
	}

	cp2 := s.bind(t, 1, lease.SNRStart+2) // leaves 5-7, event 3
	res, err = hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp2.Size, 2, 3),
		Checkpoint: string(cp2.Note), ProofFrom: 5, Proof: s.proof(t, 5, 8)})
	if err != nil || res.Applied != 1 || res.Skipped != 1 || res.VerifiedSize != 8 {
		t.Fatalf("second sync = %+v, %v", res, err)
	}
	// HQ's event records the site's leaf it verified.
	rec, err := hqDB.LookupIMEI(ctx, mustIMEI(t, lease.SNRStart+2))
	if err != nil || rec.State != store.StateBound {
		t.Fatalf("HQ row: %+v, %v", rec, err)
	}

	// A proof from a size HQ did not verify last (the site lost an
	// answer) is a conflict, not a refusal.
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Checkpoint: string(cp2.Note), ProofFrom: 5, Proof: s.proof(t, 5, 8)}); !tacerr.Is(err, tacerr.Conflict) {
		t.Fatalf("stale proof_from: %v", err)
	}

	// A rewritten log of the same key: another site ledger whose checkpoint
	// of size 10 does not extend the verified size 8.
	forged := newSiteLog(t, siteKey)
	forged.emit(t, 2)
	cpF := forged.bind(t, 6, lease.SNRStart+3)
	_, err = hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: forged.events(t, cpF.Size, 1),
		Checkpoint: string(cpF.Note), ProofFrom: 8, Proof: forged.proof(t, 8, 10)})
	if !tacerr.Is(err, tacerr.LeaseViolation) || !strings.Contains(err.Error(), "rewritten") {
		t.Fatalf("rewritten log: %v", err)
	}
	// An older checkpoint (a site restored from a backup).
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Checkpoint: string(cp1.Note)}); !tacerr.Is(err, tacerr.LeaseViolation) {
		t.Fatalf("old checkpoint: %v", err)
	}
	// An IMEI outside the site's leases, though in the site's log.
	cp3 := s.bind(t, 0, lease.SNREnd+1) // leaves 8-9, event 4
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp3.Size, 4),
		Checkpoint: string(cp3.Note), ProofFrom: 8, Proof: s.proof(t, 8, 10)}); !tacerr.Is(err, tacerr.LeaseViolation) {
		t.Fatalf("IMEI outside leases: %v", err)
	}
	// A checkpoint signed by another key.
	other := newSiteLog(t, key(t))
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Checkpoint: string(other.emit(t, 9).Note)}); !tacerr.Is(err, tacerr.LeaseViolation) {
		t.Fatalf("foreign key: %v", err)
	}
	if got := refusedTotal(t, reg); got != 4 {
		t.Fatalf("refused counter = %v, want 4", got)
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || st.Bound != 3 || st.Unused != 97 || st.Consistent || st.Refusals != 4 || st.VerifiedSize != 8 || st.AppliedSeq != 3 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if rep, err := hqDB.Check(ctx); err != nil || !rep.OK() || rep.LeasedUnused != 97 {
		t.Fatalf("HQ ledger check %+v, %v", rep, err)
	}
	// The site catches up consistently (event 4 stays refused): consistent again.
	cp4 := s.bind(t, 0, lease.SNRStart+3) // leaves 10-11, event 5
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp4.Size, 5),
		Checkpoint: string(cp4.Note), ProofFrom: 8, Proof: s.proof(t, 8, 12)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := hq.Status(ctx, "s1"); !st.Consistent || st.Bound != 4 {
		t.Fatalf("status after catch-up %+v", st)
	}
}

func mustIMEI(t *testing.T, snr uint32) imei.IMEI {
	t.Helper()
	m, err := imei.New(tac, snr)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustVKey(t *testing.T, name string, k *ecdsa.PrivateKey) string {
	t.Helper()
	v, err := audit.VerifierKey(name, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func refusedTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "tacline_site_sync_refused_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestSyncWithoutWitnessKey: a headquarters without a witness key answers
// a site's sync witness_missing (not retryable: an operator at HQ must
// act), with a message naming the setting and the command, and applies
// nothing.
func TestSyncWithoutWitnessKey(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	hqDB, lease := hqLedger(t, siteKey)
	hq, err := site.NewHQ(hqDB, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSiteLog(t, siteKey)
	cp := s.bind(t, 1, lease.SNRStart)
	_, err = hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp.Size, 1), Checkpoint: string(cp.Note)})
	if !tacerr.Is(err, tacerr.WitnessMissing) || tacerr.IsRetryable(err) ||
		!strings.Contains(err.Error(), "audit.witness_key_label") || !strings.Contains(err.Error(), "tacline audit witness-key --generate") {
		t.Fatalf("sync at a headquarters without a witness key: %v (retryable %v)", err, tacerr.IsRetryable(err))
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || st.Bound != 0 || st.VerifiedSize != 0 || st.AppliedSeq != 0 {
		t.Fatalf("HQ applied or verified part of a batch it could not cosign: %+v, %v", st, err)
	}
}

// TestSyncWithoutCheckpoint: a sync request without a checkpoint (`{}`, a
// broken client) is answered invalid_input naming the field; it is not a
// refusal: the site stays consistent, its refusals and the refusal
// counter do not move, and nothing is applied.
func TestSyncWithoutCheckpoint(t *testing.T) {
	ctx := context.Background()
	env := newHQEnv(t)
	lease, hq, reg, s := env.lease, env.hq, env.reg, env.log
	cp := s.bind(t, 1, lease.SNRStart)
	for _, req := range []wire.SiteSyncRequest{{}, {Events: s.events(t, cp.Size, 1), Checkpoint: " \n"}} {
		_, err := hq.Sync(ctx, "s1", req)
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidInput || e.Field != "checkpoint" {
			t.Fatalf("sync without a checkpoint: %v, want invalid_input on checkpoint", err)
		}
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || !st.Consistent || st.Refusals != 0 || st.Bound != 0 || st.AppliedSeq != 0 || refusedTotal(t, reg) != 0 {
		t.Fatalf("after syncs without a checkpoint: %+v, %v, refused counter %v", st, err, refusedTotal(t, reg))
	}
}

// TestSyncEventTooManyIMEIs: an event naming more IMEIs than one device
// has is invalid_input on its imeis, before anything is verified or
// written (on SQLite tens of thousands would have exceeded a statement's
// parameters: a 500).
func TestSyncEventTooManyIMEIs(t *testing.T) {
	ctx := context.Background()
	env := newHQEnv(t)
	lease, hq, s := env.lease, env.hq, env.log
	cp := s.bind(t, 1, lease.SNRStart)
	evs := s.events(t, cp.Size, 1)
	for snr := lease.SNRStart + 1; len(evs[0].IMEIs) <= imei.MaxPerDevice; snr++ {
		evs[0].IMEIs = append(evs[0].IMEIs, mustIMEI(t, snr).String())
	}
	_, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: evs, Checkpoint: string(cp.Note)})
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidInput || e.Field != "events[0].imeis" {
		t.Fatalf("an event with %d IMEIs: %v, want invalid_input on events[0].imeis", len(evs[0].IMEIs), err)
	}
	if st, err := hq.Status(ctx, "s1"); err != nil || st.Bound != 0 || st.AppliedSeq != 0 || !st.Consistent {
		t.Fatalf("status after the malformed event: %+v, %v", st, err)
	}
}
