package provisioner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestVoidDecidesInItsTransaction: Void reads the IMEI, checks the actor,
// then voids in a transaction; another replica may bind the device in
// between (here while this replica loads the pool's record, a fresh
// replica's first read of it). The station's void of what was its unused
// label is then the void of a bound device, which only an operator may do
// and which must revoke the certificate: it is refused, and the device,
// its IMEIs and its certificate are as the bind left them. Void decided on
// the IMEI read before the transaction: it voided the bound IMEIs and left
// the device BOUND with a valid certificate.
func TestVoidDecidesInItsTransaction(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "al-race", Pool: "F1-A", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		// A second replica on the same ledger, its pool cache cold.
		other, err := provisioner.New(provisioner.Config{DB: env.DB, Issuers: map[string]*issuance.Issuer{ca.KeyID(env.Issuing): env.Issuer},
			Active: ca.KeyID(env.Issuing), Manufacturer: provtest.Manufacturer, Now: env.Clock.Now, IntentTimeout: 5 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		dev := provtest.NewDevice(t)
		var bound *provisioner.Issued
		_, restore := provisioner.CountMetaLoads(func(begun int64) {
			if begun != 1 {
				return
			}
			// The first replica binds the label meanwhile (its cache is warm).
			var err error
			if bound, err = env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "b-race", IMEIs: al.Devices[0], DeviceSerial: "D-RACE", CSR: dev.CSR}); err != nil {
				t.Errorf("bind: %v", err)
			}
		})
		err = other.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S1"), IMEI: al.Devices[0][0], Reason: "test"})
		restore()
		if bound == nil {
			t.Fatal("the bind did not run between Void's read and its transaction")
		}
		if !tacerr.Is(err, tacerr.Forbidden) {
			t.Errorf("a station's void of a device bound meanwhile = %v, want forbidden", err)
		}
		for _, m := range al.Devices[0] {
			if rec, err := env.DB.LookupIMEI(ctx, m); err != nil || rec.State != store.StateBound {
				t.Errorf("IMEI %s: %s, %v; want BOUND", m, rec.State, err)
			}
		}
		if dv, err := env.DB.Device(ctx, "D-RACE"); err != nil || dv == nil || dv.State != store.StateBound {
			t.Errorf("device D-RACE = %+v, %v; want BOUND", dv, err)
		}
		if c, err := env.DB.CertificateBySerial(ctx, bound.CertSerial); err != nil || c == nil || !c.RevokedAt.IsZero() {
			t.Errorf("certificate %s = %+v, %v; want it valid", bound.CertSerial, c, err)
		}
	})
}

// TestVoidTwice: voiding what is voided already, or a revoked device's
// IMEIs, is invalid_state for whoever asks, saying so; a station was told
// forbidden ("only an operator can void a bound device") for its own label
// voided a moment before.
func TestVoidTwice(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "al-twice", Pool: "F1-A", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		label := al.Devices[0][0]
		if err := env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S1"), IMEI: label, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		out, err := provision(env, "S1", "p-twice", "SN-TWICE", provtest.NewDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "SN-TWICE", Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			actor provisioner.Actor
			imei  imei.IMEI
			want  string
		}{
			{"station, voided", provtest.Actor("S1"), label, "VOIDED already"},
			{"operator, voided", provtest.Operator, label, "VOIDED already"},
			{"station, revoked", provtest.Actor("S1"), out.IMEIs[0], "is REVOKED"},
			{"operator, revoked", provtest.Operator, out.IMEIs[0], "is REVOKED"},
		} {
			err := env.Service.Void(ctx, provisioner.VoidInput{Actor: tc.actor, IMEI: tc.imei, Reason: "scrapped"})
			if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidState || e.Field != "imei" || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%s: Void = %v; want invalid_state on imei saying %q", tc.name, err, tc.want)
			}
		}
	})
}

// TestCheckFindsDeviceAndIMEIsApart: a device whose IMEIs are in another
// state than the device (what the void race left: the IMEIs VOIDED, the
// device BOUND with a valid certificate) fails ledger check naming the
// device and the IMEI; the ledger of every use case before it passes.
func TestCheckFindsDeviceAndIMEIsApart(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		out, err := provision(env, "S1", "p-apart", "SN-APART", provtest.NewDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, serial := range []string{"SN-V", "SN-R"} {
			if _, err := provision(env, "S1", "p-"+serial, serial, provtest.NewDevice(t)); err != nil {
				t.Fatal(err)
			}
		}
		v, _ := env.Service.Device(ctx, provtest.Operator, "SN-V")
		if err := env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Operator, IMEI: v.IMEIs[0], Reason: "scrapped"}); err != nil {
			t.Fatal(err)
		}
		if err := env.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "SN-R", Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		if rep, err := env.DB.Check(ctx); err != nil || !rep.OK() {
			t.Fatalf("ledger check after provision, void and revoke: %+v, %v", rep, err)
		}
		if err := env.DB.InTx(ctx, func(tx *store.Tx) error {
			for _, m := range out.IMEIs {
				if err := storetest.SetIMEIState(tx, m.Uint64(), string(store.StateVoided)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		rep, err := env.DB.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := "device SN-APART is BOUND, but its IMEI " + out.IMEIs[0].String() + " is VOIDED"
		if rep.OK() || !strings.Contains(rep.Violations[0], want) {
			t.Fatalf("ledger check of a BOUND device with VOIDED IMEIs: %v; want %q", rep.Violations, want)
		}
	})
}
