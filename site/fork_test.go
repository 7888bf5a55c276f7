package site_test

import (
	"context"
	"crypto/ecdsa"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
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
	base := newMemLog(t, siteKey)
	base.bound(t, mustIMEI(t, lease.SNRStart), "dev-1", "0a")
	if _, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Checkpoint: base.checkpoint(t), Events: []wire.SiteEvent{base.event(t, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	a, b := base.fork(), base.fork()
	a.bound(t, mustIMEI(t, lease.SNRStart+1), "dev-2", "0b") // size 2
	b.bound(t, mustIMEI(t, lease.SNRStart+2), "dev-3", "0c")
	b.bound(t, mustIMEI(t, lease.SNRStart+3), "dev-4", "0d") // size 3, another leaf 1
	reqA := wire.SiteSyncRequest{Checkpoint: a.checkpoint(t), ProofFrom: 1, Proof: a.proof(t, 1), Events: []wire.SiteEvent{a.event(t, 1, 2)}}
	reqB := wire.SiteSyncRequest{Checkpoint: b.checkpoint(t), ProofFrom: 1, Proof: b.proof(t, 1),
		Events: []wire.SiteEvent{b.event(t, 1, 2), b.event(t, 2, 3)}}

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
	reqB.ProofFrom, reqB.Proof = 2, b.proof(t, 2)
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

// memLog is a site's audit log in memory, so that two logs can share a
// prefix and fork.
type memLog struct {
	signer *audit.NoteSigner
	leaves [][]byte
	hashes []tlog.Hash
}

func newMemLog(t *testing.T, k *ecdsa.PrivateKey) *memLog {
	t.Helper()
	s, err := audit.NewNoteSigner("s1.example/tacline-audit", k)
	if err != nil {
		t.Fatal(err)
	}
	return &memLog{signer: s}
}

func (l *memLog) fork() *memLog {
	return &memLog{signer: l.signer, leaves: append([][]byte(nil), l.leaves...), hashes: append([]tlog.Hash(nil), l.hashes...)}
}

func (l *memLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.hashes[x]
	}
	return out, nil
}

func (l *memLog) bound(t *testing.T, m interface{ String() string }, dev, cert string) {
	t.Helper()
	leaf, err := audit.EncodeEvent(store.Event{Type: store.EventIMEIBound, Time: time.Now().UTC().Truncate(time.Microsecond), Actor: "S1",
		RequestID: "r-" + dev, IMEIs: []string{m.String()}, DeviceSerial: dev, CertSerial: cert})
	if err != nil {
		t.Fatal(err)
	}
	hs, err := tlog.StoredHashes(int64(len(l.leaves)), leaf, l)
	if err != nil {
		t.Fatal(err)
	}
	l.leaves, l.hashes = append(l.leaves, leaf), append(l.hashes, hs...)
}

func (l *memLog) checkpoint(t *testing.T) string {
	t.Helper()
	n := int64(len(l.leaves))
	root, err := tlog.TreeHash(n, l)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: audit.Checkpoint{Origin: l.signer.Name(), Size: n, Root: root}.Body()}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

// event is leaf i as shipped event seq, proved in the log's current tree.
func (l *memLog) event(t *testing.T, i, seq int64) wire.SiteEvent {
	t.Helper()
	e, err := audit.DecodeEvent(l.leaves[i])
	if err != nil {
		t.Fatal(err)
	}
	pe, _ := store.SiteEventOf(e)
	pe.Seq, pe.LeafIndex = seq, i
	w := site.WireEvent(pe)
	p, err := tlog.ProveRecord(int64(len(l.leaves)), i, l)
	if err != nil {
		t.Fatal(err)
	}
	w.Leaf, w.Proof = l.leaves[i], site.EncodeHashes(p)
	return w
}

func (l *memLog) proof(t *testing.T, old int64) []string {
	t.Helper()
	p, err := tlog.ProveTree(int64(len(l.leaves)), old, l)
	if err != nil {
		t.Fatal(err)
	}
	return site.EncodeHashes(p)
}
