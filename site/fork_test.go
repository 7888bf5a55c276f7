package site_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/site/sitetest"
	"github.com/tacline/tacline/tacerr"
)

// TestSyncForkDuringSync: two batches of one site verified at the same
// time against the same checkpoint, from two logs that fork after it (a
// site restored from a backup running next to the original, or a forged
// log). The first is applied; the second, which extends the old
// checkpoint but not the one HQ has just verified, must not be applied:
// it is answered conflict (read the status and send again) and, sent
// again from HQ's new size, refused as a rewritten log. HQ's cosigner is
// wrapped to run the first batch between the second's checks and its
// application (the only fault injected).
func TestSyncForkDuringSync(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	hqDB, lease := hqLedger(t, siteKey)
	w := &interleave{Cosigner: witness(t)}
	hq, err := site.NewHQ(hqDB, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := audit.NewNoteSigner("s1.example/tacline-audit", siteKey)
	if err != nil {
		t.Fatal(err)
	}
	base := sitetest.NewMemLog(signer)
	base.Bound(t, mustIMEI(t, lease.SNRStart), "dev-1", "0a")
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Checkpoint: base.Checkpoint(t), Events: []wire.SiteEvent{base.Event(t, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	a, b := base.Fork(), base.Fork()
	a.Bound(t, mustIMEI(t, lease.SNRStart+1), "dev-2", "0b") // size 2
	b.Bound(t, mustIMEI(t, lease.SNRStart+2), "dev-3", "0c")
	b.Bound(t, mustIMEI(t, lease.SNRStart+3), "dev-4", "0d") // size 3, another leaf 1
	reqA := wire.SiteSyncRequest{Checkpoint: a.Checkpoint(t), ProofFrom: 1, Proof: a.Proof(t, 1), Events: []wire.SiteEvent{a.Event(t, 1, 2)}}
	reqB := wire.SiteSyncRequest{Checkpoint: b.Checkpoint(t), ProofFrom: 1, Proof: b.Proof(t, 1),
		Events: []wire.SiteEvent{b.Event(t, 1, 2), b.Event(t, 2, 3)}}

	var resA wire.SiteSyncResponse
	var errA error
	w.before = func() { resA, errA = hq.Sync(ctx, "s1", reqA) }
	_, errB := hq.Sync(ctx, "s1", reqB)
	if errA != nil || resA.Applied != 1 || resA.VerifiedSize != 2 {
		t.Fatalf("batch A = %+v, %v", resA, errA)
	}
	if !tacerr.Is(errB, tacerr.Conflict) {
		t.Fatalf("batch B of a forked log, verified before A was applied: %v, want conflict", errB)
	}
	for _, snr := range []uint32{lease.SNRStart + 2, lease.SNRStart + 3} {
		if rec, err := hqDB.LookupIMEI(ctx, mustIMEI(t, snr)); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("SNR %06d of the forked log at HQ: %+v, %v", snr, rec, err)
		}
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || st.VerifiedSize != 2 || st.AppliedSeq != 2 || st.Bound != 2 {
		t.Fatalf("status %+v, %v", st, err)
	}
	// Sent again from the size HQ verified: the forked log does not extend it.
	reqB.ProofFrom, reqB.Proof = 2, b.Proof(t, 2)
	if _, err := hq.Sync(ctx, "s1", reqB); !tacerr.Is(err, tacerr.LeaseViolation) {
		t.Fatalf("batch B sent again: %v, want lease_violation", err)
	}
}

// interleave is HQ's witness, running before (once) when asked to cosign:
// between a batch's checks and its application.
type interleave struct {
	*audit.Cosigner
	before func()
}

func (i *interleave) Sign(msg []byte) ([]byte, error) {
	if f := i.before; f != nil {
		i.before = nil
		f()
	}
	return i.Cosigner.Sign(msg)
}
