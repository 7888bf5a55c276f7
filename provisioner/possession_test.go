package provisioner_test

import (
	"context"
	"encoding/pem"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestRefusalsBeforeProofOfPossession: a provisioning or bind request from
// a disabled or unknown station, and a replay, are answered without
// verifying the CSR's signature (the station's verdict and the replay come
// from the request's one ledger read); every new device's proof of
// possession is still verified once, and a bad signature is still
// refused with nothing reserved.
func TestRefusalsBeforeProofOfPossession(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		count, restore := provisioner.CountPossessionChecks()
		defer restore()
		want := func(n int64) {
			t.Helper()
			if got := count(); got != n {
				t.Fatalf("%d proofs of possession verified, want %d", got, n)
			}
		}
		nothingFor := func(reqID string) {
			t.Helper()
			if is, err := env.DB.IssuanceByRequestID(ctx, reqID); err != nil || is != nil {
				t.Fatalf("refused request %s left intent %+v (%v)", reqID, is, err)
			}
		}
		stillReserved := func(ims []imei.IMEI) {
			t.Helper()
			for _, m := range ims {
				if rec, err := env.DB.LookupIMEI(ctx, m); err != nil || rec.State != store.StateReserved {
					t.Fatalf("IMEI %s: %s (%v), want RESERVED", m, rec.State, err)
				}
			}
		}
		bind := func(station, reqID, serial string, ims []imei.IMEI, csr []byte) (*provisioner.Issued, error) {
			return env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor(station), RequestID: reqID, IMEIs: ims, DeviceSerial: serial, CSR: csr})
		}

		dev := provtest.NewDevice(t)
		if _, err := provision(env, "S1", "p-1", "SN-P1", dev); err != nil {
			t.Fatal(err)
		}
		want(1)
		if out, err := provision(env, "S1", "p-1", "SN-P1", dev); err != nil || !out.Replayed {
			t.Fatalf("replay: %+v, %v", out, err)
		}
		want(1)
		// A bad signature (the last byte of the DER flipped) is refused.
		block, _ := pem.Decode(provtest.NewDevice(t).CSR)
		bad := append([]byte(nil), block.Bytes...)
		bad[len(bad)-1] ^= 0x01
		_, err := env.Service.Provision(ctx, provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "p-bad",
			DeviceSerial: "SN-PBAD", Product: "EX-1", CSR: bad})
		wantCode(t, err, tacerr.CSRInvalid)
		want(2)
		nothingFor("p-bad")

		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "al-1", Pool: "F1-A", Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		bdev := provtest.NewDevice(t)
		if _, err := bind("S1", "b-1", "SN-B1", al.Devices[0], bdev.CSR); err != nil {
			t.Fatal(err)
		}
		want(3)
		if out, err := bind("S1", "b-1", "SN-B1", al.Devices[0], bdev.CSR); err != nil || !out.Replayed {
			t.Fatalf("bind replay: %+v, %v", out, err)
		}
		want(3)
		_, err = bind("S1", "b-bad", "SN-BBAD", al.Devices[1], bad)
		wantCode(t, err, tacerr.CSRInvalid)
		want(4)
		nothingFor("b-bad")
		stillReserved(al.Devices[1])

		// Disabled: refused on the next request, replays included, with
		// no signature verified and nothing reserved.
		if err := env.DB.DisableStation(ctx, "S1", "test"); err != nil {
			t.Fatal(err)
		}
		_, err = provision(env, "S1", "p-2", "SN-P2", provtest.NewDevice(t))
		wantCode(t, err, tacerr.Forbidden)
		nothingFor("p-2")
		_, err = provision(env, "S1", "p-1", "SN-P1", dev)
		wantCode(t, err, tacerr.Forbidden)
		_, err = bind("S1", "b-2", "SN-B2", al.Devices[2], provtest.NewDevice(t).CSR)
		wantCode(t, err, tacerr.Forbidden)
		nothingFor("b-2")
		stillReserved(al.Devices[2])
		_, err = bind("S1", "b-1", "SN-B1", al.Devices[0], bdev.CSR)
		wantCode(t, err, tacerr.Forbidden)
		// Never enrolled.
		_, err = provision(env, "S99", "p-3", "SN-P3", provtest.NewDevice(t))
		wantCode(t, err, tacerr.Unauthorized)
		nothingFor("p-3")
		_, err = bind("S99", "b-3", "SN-B3", al.Devices[2], provtest.NewDevice(t).CSR)
		wantCode(t, err, tacerr.Unauthorized)
		nothingFor("b-3")
		want(4)
		ledgerOK(t, env)
	})
}
