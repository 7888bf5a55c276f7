package store_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// provisionRequest is a provisioning reservation carrying its issuance intent.
func provisionRequest(id string) store.ReserveRequest {
	spki := []byte("spki-" + id)
	h := sha256.Sum256(spki)
	return store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: "A", Caller: "S1", Kind: store.KindProvision,
		DeviceSerial: "dev-" + id, PerDevice: 2,
		Issuance: &store.Issuance{RequestID: id, Kind: "provision", RequestHash: []byte(id), Station: "S1", DeviceSerial: "dev-" + id,
			CertSerial: fmt.Sprintf("c0%x", h[:8]), NotBefore: time.Unix(1700000000, 0).UTC(), IssuerKeyID: "k1", PublicKey: spki, SPKIHash: h[:]}}
}

// bindingOf is the binding that completes a reservation's intent.
func bindingOf(r *store.Reservation, req store.ReserveRequest) *store.Binding {
	is := req.Issuance
	return &store.Binding{RequestID: is.RequestID, DeviceSerial: is.DeviceSerial, Station: is.Station, ReservationID: r.ID,
		CertSerial: is.CertSerial, IssuerKeyID: is.IssuerKeyID, DER: []byte("der-" + is.RequestID), TBSHash: make([]byte, 32),
		SPKIHash: is.SPKIHash, IMEIs: r.Devices[0], IssuedAt: time.Unix(1700000100, 0).UTC()}
}

// reserveBatch reserves n provisioning requests (with intents) in one batch.
func reserveBatch(t *testing.T, db *store.DB, prefix string, n int) ([]*store.Reservation, []store.ReserveRequest) {
	t.Helper()
	var reqs []store.ReserveRequest
	for i := 0; i < n; i++ {
		reqs = append(reqs, provisionRequest(fmt.Sprintf("%s%d", prefix, i)))
	}
	res, errs := db.RunBatch(reqs, nil)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reservation %d: %v", i, err)
		}
	}
	return res, reqs
}

func TestReserveBatchRecordsIntents(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "r", 3)
		for i, r := range res {
			is, err := db.IssuanceByRequestID(ctx, reqs[i].RequestID)
			if err != nil || is == nil {
				t.Fatalf("intent %s: %v, %v", reqs[i].RequestID, is, err)
			}
			if is.State != store.IssuancePending || is.ReservationID != r.ID || is.Group != 0 || is.CertSerial != reqs[i].Issuance.CertSerial ||
				string(is.PublicKey) != string(reqs[i].Issuance.PublicKey) || !is.NotBefore.Equal(reqs[i].Issuance.NotBefore) {
				t.Fatalf("intent %s = %+v (reservation %d)", reqs[i].RequestID, is, r.ID)
			}
		}
		// A duplicate certificate serial fails only its own reservation, and
		// takes no SNR.
		a, b := provisionRequest("x0"), provisionRequest("x1")
		b.Issuance.CertSerial = reqs[0].Issuance.CertSerial
		got, errs := db.RunBatch([]store.ReserveRequest{a, b}, nil)
		if errs[0] != nil || got[0] == nil {
			t.Fatalf("first reservation: %v", errs[0])
		}
		wantCode(t, errs[1], tacerr.RequestConflict)
		// An intent with a reservation kind other than provision is refused.
		c := provisionRequest("x2")
		c.Kind, c.DeviceSerial = store.KindPreallocate, ""
		if _, err := db.Reserve(ctx, c); err == nil {
			t.Fatal("intent with a pre-allocation accepted")
		}
		rep := mustCheck(t, db)
		if rep.IMEIs != 8 {
			t.Fatalf("ledger holds %d IMEIs, want 8", rep.IMEIs)
		}
	})
}

func TestBindBatch(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		sink := &recordingSink{}
		db.AddSink(sink)
		res, reqs := reserveBatch(t, db, "b", 4)
		var binds []*store.Binding
		for i, r := range res {
			binds = append(binds, bindingOf(r, reqs[i]))
		}
		sink.events = nil
		if _, errs := db.RunBatch(nil, binds); fmt.Sprint(errs) != "[<nil> <nil> <nil> <nil>]" {
			t.Fatalf("errors = %v", errs)
		}
		for i, b := range binds {
			is, err := db.IssuanceByRequestID(ctx, b.RequestID)
			if err != nil || is.State != store.IssuanceIssued {
				t.Fatalf("intent %s: %+v, %v", b.RequestID, is, err)
			}
			c, err := db.CertificateByRequestID(ctx, b.RequestID)
			if err != nil || c == nil || c.Serial != b.CertSerial || string(c.DER) != string(b.DER) || c.DeviceSerial != b.DeviceSerial {
				t.Fatalf("certificate %s: %+v, %v", b.RequestID, c, err)
			}
			d, err := db.Device(ctx, b.DeviceSerial)
			if err != nil || d == nil || d.State != store.StateBound || d.CertSerial != b.CertSerial || d.ReservationID != res[i].ID || d.Station != "S1" {
				t.Fatalf("device %s: %+v, %v", b.DeviceSerial, d, err)
			}
			if owner, err := db.DeviceKeyOwner(ctx, b.SPKIHash); err != nil || owner != b.DeviceSerial {
				t.Fatalf("key owner = %q, %v", owner, err)
			}
			for _, m := range b.IMEIs {
				rec, err := db.LookupIMEI(ctx, m)
				if err != nil || rec.State != store.StateBound || rec.DeviceSerial != b.DeviceSerial || rec.CertSerial != b.CertSerial || rec.BoundAt.IsZero() {
					t.Fatalf("IMEI %s: %+v, %v", m, rec, err)
				}
			}
		}
		if len(sink.events) != 4 {
			t.Fatalf("%d events, want 4", len(sink.events))
		}
		for i, ev := range sink.events {
			b := binds[i]
			if ev.Type != store.EventIMEIBound || ev.Pool != "A" || ev.DeviceSerial != b.DeviceSerial || ev.CertSerial != b.CertSerial ||
				ev.RequestID != b.RequestID || ev.Actor != "S1" || fmt.Sprint(ev.IMEIs) != fmt.Sprintf("[%s %s]", b.IMEIs[0], b.IMEIs[1]) {
				t.Fatalf("event %d = %+v", i, ev)
			}
		}
		mustCheck(t, db)
	})
}

// A binding that cannot be recorded fails alone with its own error code; the
// others of its batch are recorded.
func TestBindBatchErrorsAreEachBindingsOwn(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "e", 5)
		var binds []*store.Binding
		for i, r := range res {
			binds = append(binds, bindingOf(r, reqs[i]))
		}
		// e1 presents e0's key (key reuse); e3 is a second completion of e2
		// (its intent is no longer pending once e2 is recorded); e4 lists an
		// IMEI of e0 (not RESERVED once e0 is bound).
		binds[1].SPKIHash = binds[0].SPKIHash
		twin := *binds[2]
		twin.CertSerial, twin.DER = "ffff", []byte("other")
		binds[3] = &twin
		binds[4].IMEIs = append(binds[4].IMEIs[:1:1], binds[0].IMEIs[0])
		_, errs := db.RunBatch(nil, binds)
		if errs[0] != nil || errs[2] != nil {
			t.Fatalf("errors = %v", errs)
		}
		wantCode(t, errs[1], tacerr.KeyReused)
		wantCode(t, errs[3], tacerr.Conflict)
		wantCode(t, errs[4], tacerr.InvalidState)
		for i, want := range []string{store.IssuanceIssued, store.IssuancePending, store.IssuanceIssued, store.IssuancePending, store.IssuancePending} {
			is, err := db.IssuanceByRequestID(ctx, reqs[i].RequestID)
			if err != nil || is.State != want {
				t.Fatalf("intent %d: %+v, %v; want %s", i, is, err, want)
			}
		}
		if c, err := db.CertificateBySerial(ctx, "ffff"); err != nil || c != nil {
			t.Fatalf("the losing twin's certificate was recorded: %+v, %v", c, err)
		}
		rec, err := db.LookupIMEI(ctx, res[4].Devices[0][0])
		if err != nil || rec.State != store.StateReserved {
			t.Fatalf("IMEI of the failed binding: %+v, %v", rec, err)
		}
		mustCheck(t, db)
	})
}

func TestNewDeviceCheck(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "n", 1)
		b := bindingOf(res[0], reqs[0])
		check := func(serial string, spki []byte, wantExists bool, wantOwner string) {
			t.Helper()
			c, err := db.NewRequestCheck(ctx, "", serial, spki)
			if err != nil || c.Issuance != nil || c.DeviceExists != wantExists || c.KeyOwner != wantOwner {
				t.Fatalf("NewRequestCheck(%s) = %+v, %v; want no intent, %v, %q", serial, c, err, wantExists, wantOwner)
			}
		}
		// NewRequestCheck reads the same and the request id's intent.
		intent := func(requestID, wantState string) {
			t.Helper()
			c, err := db.NewRequestCheck(ctx, requestID, b.DeviceSerial, b.SPKIHash)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case wantState == "" && c.Issuance != nil:
				t.Fatalf("NewRequestCheck(%s): intent %+v, want none", requestID, c.Issuance)
			case wantState != "" && (c.Issuance == nil || c.Issuance.RequestID != requestID || c.Issuance.State != wantState ||
				c.Issuance.DeviceSerial != b.DeviceSerial || c.Issuance.ReservationID != b.ReservationID || c.Issuance.CertSerial != b.CertSerial):
				t.Fatalf("NewRequestCheck(%s): intent %+v, want the binding's, %s", requestID, c.Issuance, wantState)
			}
			// The key is claimed for the device from its reservation on (claimKeys).
			if c.DeviceExists != (wantState == store.IssuanceIssued) || c.KeyOwner != b.DeviceSerial {
				t.Fatalf("NewRequestCheck(%s): device exists %v, key owner %q", requestID, c.DeviceExists, c.KeyOwner)
			}
		}
		check(b.DeviceSerial, b.SPKIHash, false, b.DeviceSerial)
		intent(b.RequestID, store.IssuancePending)
		intent("unknown-request", "")
		if err := db.CommitBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
		check(b.DeviceSerial, b.SPKIHash, true, b.DeviceSerial)
		check("other", b.SPKIHash, false, b.DeviceSerial)
		check("other", []byte("unknown key"), false, "")
		intent(b.RequestID, store.IssuanceIssued)
	})
}

// One batch over several pools: pools with room are claimed together, a pool
// too close to exhaustion for the batch is decided request by request, an
// unknown pool fails only its request.
func TestReserveBatchSeveralPools(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 100, SNREnd: 102, Product: "EX-1", Market: "DE"}, "test"); err != nil {
			t.Fatal(err)
		}
		req := func(id, pool string) store.ReserveRequest {
			return store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: pool, Caller: "S1", Kind: store.KindBench, PerDevice: 2}
		}
		res, errs := db.RunBatch([]store.ReserveRequest{req("a1", "A"), req("b1", "B"), req("b2", "B"), req("x", "nope"), req("a2", "A")}, nil)
		for i, want := range []uint32{0, 100, 0, 0, 2} {
			if i == 2 || i == 3 {
				continue
			}
			if errs[i] != nil || res[i].Devices[0][0].SNR() != want || res[i].Devices[0][1].SNR() != want+1 {
				t.Fatalf("request %d: %+v, %v; want SNRs from %d", i, res[i], errs[i], want)
			}
		}
		wantCode(t, errs[2], tacerr.PoolExhausted)
		wantCode(t, errs[3], tacerr.PoolNotFound)
		rep := mustCheck(t, db)
		if rep.IMEIs != 6 {
			t.Fatalf("ledger holds %d IMEIs, want 6", rep.IMEIs)
		}
	})
}

// IMEIs reserved for one device are never bound to another: the binding
// fails with invalid_state naming the device they are reserved for, alone
// in a batch (the statement-by-statement rerun names it) as well as on its
// own, and the IMEIs stay reserved for their device.
func TestBindKeepsIMEIsToTheirDevice(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "k", 3)
		wrong := bindingOf(res[1], reqs[1])
		wrong.IMEIs = res[2].Devices[0] // reserved for dev-k2
		for _, batch := range [][]*store.Binding{{bindingOf(res[0], reqs[0]), wrong}, {wrong}} {
			_, errs := db.RunBatch(nil, batch)
			e := wantCode(t, errs[len(errs)-1], tacerr.InvalidState)
			if !strings.Contains(e.Error(), "reserved for device dev-k2") {
				t.Fatalf("error = %v, want it to name dev-k2", e)
			}
			if len(errs) == 2 && errs[0] != nil {
				t.Fatalf("the other binding of the batch failed: %v", errs[0])
			}
		}
		for _, m := range res[2].Devices[0] {
			rec, err := db.LookupIMEI(ctx, m)
			if err != nil || rec.State != store.StateReserved || rec.DeviceSerial != "dev-k2" {
				t.Fatalf("IMEI %s: %+v, %v", m, rec, err)
			}
		}
		mustCheck(t, db)
	})
}
