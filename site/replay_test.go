package site_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// TestSyncRefusesReplayedReissue: a sequence number is not part of an
// audit leaf, so a site can ship a leaf HQ applied before once more under
// a new sequence number (its inclusion proof and content still hold). A
// replayed device.reissued must not roll HQ's record of the device back to
// a certificate it replaced: the batch is refused (lease_violation on the
// event's leaf_index: at or below the last leaf HQ applied), counted, and
// nothing of it is applied. A new leaf that reissues from a replaced
// certificate (a site's log that says so) is refused too
// (previous_cert_serial).
func TestSyncRefusesReplayedReissue(t *testing.T) {
	ctx := context.Background()
	env := newHQEnv(t)
	hqDB, lease, hq, reg, s := env.db, env.lease, env.hq, env.reg, env.log
	s.bind(t, 0, lease.SNRStart) // event 1: bound with certificate 0a
	m := mustIMEI(t, lease.SNRStart)
	dev := "dev-" + m.String()
	for _, r := range []struct{ prev, cert string }{{"0a", "0b"}, {"0b", "0c"}} { // events 2 and 3
		if err := s.db.InTx(ctx, func(tx *store.Tx) error {
			tx.Emit(store.Event{Type: store.EventDeviceReissued, Actor: "test", RequestID: "re-" + r.cert, TAC: m.TACString(),
				IMEIs: []string{m.String()}, DeviceSerial: dev, CertSerial: r.cert, Attrs: map[string]string{"previous_cert_serial": r.prev}})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	cp := s.emit(t, 0)
	res, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp.Size, 1, 2, 3), Checkpoint: string(cp.Note)})
	if err != nil || res.Applied != 3 || res.AppliedSeq != 3 {
		t.Fatalf("sync = %+v, %v", res, err)
	}
	if rec, err := hqDB.LookupIMEI(ctx, m); err != nil || rec.CertSerial != "0c" {
		t.Fatalf("HQ row after the reissues: %+v, %v", rec, err)
	}

	// The first reissue's leaf once more, as event 4.
	replay := s.events(t, cp.Size, 2)
	replay[0].Seq = 4
	_, err = hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: replay, Checkpoint: string(cp.Note), ProofFrom: cp.Size})
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.LeaseViolation || e.Field != "events[0].leaf_index" {
		t.Fatalf("replayed reissue: %v, want lease_violation on events[0].leaf_index", err)
	}
	if rec, err := hqDB.LookupIMEI(ctx, m); err != nil || rec.CertSerial != "0c" {
		t.Fatalf("HQ row after the replay: certificate %q (%v), want 0c", rec.CertSerial, err)
	}
	// A new leaf, event 4, reissuing from the replaced certificate 0a.
	if err := s.db.InTx(ctx, func(tx *store.Tx) error {
		tx.Emit(store.Event{Type: store.EventDeviceReissued, Actor: "test", RequestID: "re-0d", TAC: m.TACString(),
			IMEIs: []string{m.String()}, DeviceSerial: dev, CertSerial: "0d", Attrs: map[string]string{"previous_cert_serial": "0a"}})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cp2 := s.emit(t, 0)
	_, err = hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: s.events(t, cp2.Size, 4), Checkpoint: string(cp2.Note),
		ProofFrom: cp.Size, Proof: s.proof(t, cp.Size, cp2.Size)})
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.LeaseViolation || e.Field != "previous_cert_serial" {
		t.Fatalf("reissue from a replaced certificate: %v, want lease_violation on previous_cert_serial", err)
	}
	if rec, err := hqDB.LookupIMEI(ctx, m); err != nil || rec.CertSerial != "0c" {
		t.Fatalf("HQ row after the stale reissue: certificate %q (%v), want 0c", rec.CertSerial, err)
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || st.AppliedSeq != 3 || st.Consistent || st.Refusals != 2 {
		t.Fatalf("status %+v, %v", st, err)
	}
	if got := refusedTotal(t, reg); got != 2 {
		t.Fatalf("refused counter = %v, want 2", got)
	}
}
