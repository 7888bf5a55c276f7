package provisioner_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

func wantCode(t *testing.T, err error, code tacerr.Code) {
	t.Helper()
	if !tacerr.Is(err, code) {
		t.Fatalf("error = %v, want %s", err, code)
	}
}

func provision(env *provtest.Env, station, req, serial string, dev *provtest.Device) (*provisioner.Issued, error) {
	return env.Service.Provision(context.Background(), provisioner.ProvisionInput{Actor: provtest.Actor(station), RequestID: req,
		DeviceSerial: serial, Product: "EX-1", CSR: dev.CSR})
}

// checkIssued verifies what a station would: the chain, the SAN, the key.
func checkIssued(t *testing.T, env *provtest.Env, out *provisioner.Issued, dev *provtest.Device) {
	t.Helper()
	inter := x509.NewCertPool()
	inter.AddCert(env.Issuing)
	if _, err := out.Certificate.Verify(x509.VerifyOptions{Roots: env.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("certificate does not chain to the root: %v", err)
	}
	if len(out.Certificate.URIs) != len(out.IMEIs) {
		t.Fatalf("SAN has %d URIs for %d IMEIs", len(out.Certificate.URIs), len(out.IMEIs))
	}
	for i, u := range out.Certificate.URIs {
		m, err := imei.ParseURN(u.String())
		if err != nil || m != out.IMEIs[i] {
			t.Fatalf("SAN URI %d = %s, want %s", i, u, out.IMEIs[i].URN())
		}
	}
	if !dev.Key.PublicKey.Equal(out.Certificate.PublicKey) {
		t.Fatal("certificate does not certify the device key")
	}
	if out.Certificate.Subject.SerialNumber != out.DeviceSerial {
		t.Fatalf("subject serialNumber = %q", out.Certificate.Subject.SerialNumber)
	}
}

func ledgerOK(t *testing.T, env *provtest.Env) store.CheckReport {
	t.Helper()
	rep, err := env.DB.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("ledger check: %v", rep.Violations)
	}
	return rep
}

func TestProvisionReplayAndConflicts(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		dev := provtest.NewDevice(t)
		out, err := provision(env, "S1", "req-1", "SN-0001", dev)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.IMEIs) != 2 || out.IMEIs[0].TAC() != provtest.TAC || out.IMEIs[1].SNR() != out.IMEIs[0].SNR()+1 || out.Replayed {
			t.Fatalf("IMEIs = %v", out.IMEIs)
		}
		checkIssued(t, env, out, dev)

		again, err := provision(env, "S1", "req-1", "SN-0001", dev)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Replayed || again.CertSerial != out.CertSerial || !bytes.Equal(again.CertDER, out.CertDER) || fmt.Sprint(again.IMEIs) != fmt.Sprint(out.IMEIs) {
			t.Fatal("a replay did not return the same IMEIs and certificate")
		}
		_, err = provision(env, "S1", "req-1", "SN-0002", dev)
		wantCode(t, err, tacerr.RequestConflict)

		// The same device with a new request id: already provisioned, with its IMEIs.
		_, err = provision(env, "S1", "req-2", "SN-0001", provtest.NewDevice(t))
		wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
		var ape *provisioner.AlreadyProvisionedError
		if !errors.As(err, &ape) || len(ape.ExistingIMEIs()) != 2 || ape.ExistingIMEIs()[0] != out.IMEIs[0] {
			t.Fatalf("device_already_provisioned does not carry the IMEIs: %v", err)
		}
		// The same key on another device is a cloning signal.
		_, err = provision(env, "S1", "req-3", "SN-0003", dev)
		wantCode(t, err, tacerr.KeyReused)

		rec, err := env.DB.LookupIMEI(context.Background(), out.IMEIs[0])
		if err != nil || rec.State != store.StateBound || rec.DeviceSerial != "SN-0001" || rec.CertSerial != out.CertSerial {
			t.Fatalf("ledger row = %+v, %v", rec, err)
		}
		rep := ledgerOK(t, env)
		if rep.IMEIs != 2 {
			t.Fatalf("ledger holds %d IMEIs, want 2 (refused requests burn nothing)", rep.IMEIs)
		}
	})
}

func TestProvisionRefusals(t *testing.T) {
	env := provtest.New(t, store.SQLite)
	ctx := context.Background()
	dev := provtest.NewDevice(t)
	for _, tc := range []struct {
		name string
		in   provisioner.ProvisionInput
		code tacerr.Code
	}{
		{"foreign pool", provisioner.ProvisionInput{Actor: provtest.Actor("S2"), RequestID: "a", DeviceSerial: "X1", Pool: "F1-A", CSR: dev.CSR}, tacerr.StationNotAuthorized},
		{"no pool for product", provisioner.ProvisionInput{Actor: provtest.Actor("S2"), RequestID: "b", DeviceSerial: "X2", Product: "EX-S", CSR: dev.CSR}, tacerr.StationNotAuthorized},
		{"tac not approved", provisioner.ProvisionInput{Actor: provtest.Actor("S3"), RequestID: "c", DeviceSerial: "X3", Product: "EX-X", CSR: dev.CSR}, tacerr.TACNotApproved},
		{"garbage csr", provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "d", DeviceSerial: "X4", Product: "EX-1", CSR: []byte("garbage")}, tacerr.CSRInvalid},
		{"bad serial", provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "e", DeviceSerial: "bad serial", Product: "EX-1", CSR: dev.CSR}, tacerr.InvalidInput},
		// Once accepted by the provisioner and refused by the profile after the IMEIs were reserved.
		{"underscore serial", provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "e2", DeviceSerial: "SN_1", Product: "EX-1", CSR: dev.CSR}, tacerr.InvalidInput},
		{"slash serial", provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "e3", DeviceSerial: "SN/1", Product: "EX-1", CSR: dev.CSR}, tacerr.InvalidInput},
		{"too many imeis", provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "f", DeviceSerial: "X6", Product: "EX-1", IMEICount: 3, CSR: dev.CSR}, tacerr.InvalidInput},
		{"unknown station", provisioner.ProvisionInput{Actor: provtest.Actor("S9"), RequestID: "g", DeviceSerial: "X7", Product: "EX-1", CSR: dev.CSR}, tacerr.Unauthorized},
		{"no request id", provisioner.ProvisionInput{Actor: provtest.Actor("S1"), DeviceSerial: "X8", Product: "EX-1", CSR: dev.CSR}, tacerr.InvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := storetest.ReadCounts(t, env.DB)
			_, err := env.Service.Provision(ctx, tc.in)
			wantCode(t, err, tc.code)
			if d := before.Diff(storetest.ReadCounts(t, env.DB)); d != "" {
				t.Fatalf("the refused request changed the ledger: %s", d)
			}
		})
	}
	if rep := ledgerOK(t, env); rep.IMEIs != 0 {
		t.Fatalf("refused requests burned %d IMEIs", rep.IMEIs)
	}
	if err := env.DB.DisableStation(ctx, "S1", "test"); err != nil {
		t.Fatal(err)
	}
	_, err := provision(env, "S1", "h", "X9", dev)
	wantCode(t, err, tacerr.Forbidden)
}

// TestKnownDownSignerReservesNothing: once a signature failed, new requests
// are refused with hsm_unavailable before anything is reserved, until a
// probe signature succeeds again.
func TestKnownDownSignerReservesNothing(t *testing.T) {
	var fs *provtest.FaultySigner
	env := provtest.New(t, store.SQLite, provtest.WithFaultySigner(&fs))
	ctx := context.Background()
	fs.Down.Store(true)
	_, err := provision(env, "S1", "k1", "SN-K1", provtest.NewDevice(t)) // the failure that makes the signer known to be down
	wantCode(t, err, tacerr.HSMUnavailable)
	al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "k-al", Pool: "F1-A", Count: 1})
	if err != nil {
		t.Fatal(err) // pre-allocation signs nothing: it goes on
	}
	before := storetest.ReadCounts(t, env.DB)
	for i, call := range []func() error{
		func() error { _, err := provision(env, "S1", "k2", "SN-K2", provtest.NewDevice(t)); return err },
		func() error {
			_, err := env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "k3", IMEIs: al.Devices[0], DeviceSerial: "SN-K3", CSR: provtest.NewDevice(t).CSR})
			return err
		},
	} {
		err := call()
		wantCode(t, err, tacerr.HSMUnavailable)
		if !tacerr.IsRetryable(err) {
			t.Fatalf("call %d: %v is not retryable", i, err)
		}
	}
	if d := before.Diff(storetest.ReadCounts(t, env.DB)); d != "" {
		t.Fatalf("requests refused while the signer is down changed the ledger: %s", d)
	}
	fs.Down.Store(false)
	if _, err := provision(env, "S1", "k4", "SN-K4", provtest.NewDevice(t)); err != nil {
		t.Fatalf("after the HSM came back: %v", err)
	}
}

// failSignature provisions a device while the HSM is down (fs): the
// request fails hsm_unavailable after its intent was recorded, which stays
// pending. The HSM is back when it returns.
func failSignature(t *testing.T, env *provtest.Env, fs *provtest.FaultySigner, id, serial string, dev *provtest.Device) {
	t.Helper()
	fs.Down.Store(true)
	defer fs.Down.Store(false)
	_, err := provision(env, "S1", id, serial, dev)
	wantCode(t, err, tacerr.HSMUnavailable)
}

func TestCrashBetweenIntentAndSignature(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		var fs *provtest.FaultySigner
		env := provtest.New(t, d, provtest.WithFaultySigner(&fs))
		ctx := context.Background()
		dev := provtest.NewDevice(t)
		failSignature(t, env, fs, "r1", "SN-1", dev)
		is, err := env.DB.IssuanceByRequestID(ctx, "r1")
		if err != nil || is == nil || is.State != store.IssuancePending {
			t.Fatalf("intent after a failed signature = %+v, %v", is, err)
		}
		// The replay completes the same intent: same IMEIs, same serial.
		out, err := provision(env, "S1", "r1", "SN-1", dev)
		if err != nil {
			t.Fatal(err)
		}
		if out.CertSerial != is.CertSerial {
			t.Fatalf("replay issued serial %s, intent recorded %s", out.CertSerial, is.CertSerial)
		}
		// The first success is not a replay (the API answers 201), whatever failed before; the next one is.
		if out.Replayed {
			t.Fatal("the first success after a failed attempt is marked as a replay")
		}
		checkIssued(t, env, out, dev)
		if again, err := provision(env, "S1", "r1", "SN-1", dev); err != nil || !again.Replayed || again.CertSerial != out.CertSerial {
			t.Fatalf("true replay = %+v, %v", again, err)
		}

		// A second crash, never retried: recovery abandons it after the timeout.
		failSignature(t, env, fs, "r2", "SN-2", provtest.NewDevice(t))
		if n, err := env.Service.Recover(ctx); err != nil || n != 0 {
			t.Fatalf("recovery before the timeout voided %d (%v)", n, err)
		}
		env.Clock.Add(6 * time.Minute)
		n, err := env.Service.Recover(ctx)
		if err != nil || n != 2 {
			t.Fatalf("recovery voided %d IMEIs (%v), want 2", n, err)
		}
		_, err = provision(env, "S1", "r2", "SN-2", provtest.NewDevice(t))
		wantCode(t, err, tacerr.RequestConflict) // another CSR: another request
		r2, _ := env.DB.ReservationByRequestID(ctx, "r2")
		rec, _ := env.DB.LookupIMEI(ctx, r2.Devices[0][0])
		if rec.State != store.StateVoided || rec.Reason != "abandoned" {
			t.Fatalf("abandoned IMEI = %+v", rec)
		}
		// The device can be provisioned again with a new request id; voided IMEIs are not reused.
		again, err := provision(env, "S1", "r3", "SN-2", provtest.NewDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		if again.IMEIs[0].SNR() <= r2.Devices[0][1].SNR() {
			t.Fatalf("voided SNRs reused: %v after %v", again.IMEIs, r2.Devices[0])
		}
		ledgerOK(t, env)
	})
}

func TestPreallocateBindVoidReissueRevoke(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "al-1", Pool: "F1-A", Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(al.Devices) != 3 || len(al.Devices[2]) != 2 {
			t.Fatalf("allocation = %v", al.Devices)
		}
		again, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "al-1", Pool: "F1-A", Count: 3})
		if err != nil || !again.Replayed || again.Devices[1][0] != al.Devices[1][0] {
			t.Fatalf("replayed allocation = %+v, %v", again, err)
		}
		dev := provtest.NewDevice(t)
		// A station of another factory cannot bind S1's labels; a partial group is refused.
		_, err = env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S2"), RequestID: "b0", IMEIs: al.Devices[0], DeviceSerial: "D0", CSR: dev.CSR})
		wantCode(t, err, tacerr.NotOwner)
		_, err = env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "b0", IMEIs: al.Devices[0][:1], DeviceSerial: "D0", CSR: dev.CSR})
		wantCode(t, err, tacerr.InvalidInput)
		out, err := env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "b1", IMEIs: al.Devices[0], DeviceSerial: "D0", CSR: dev.CSR})
		if err != nil {
			t.Fatal(err)
		}
		checkIssued(t, env, out, dev)
		if out.IMEIs[0] != al.Devices[0][0] {
			t.Fatal("bind issued other IMEIs than the label's")
		}
		// A station voids one of its own unused labels; not a bound device.
		if err := env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S1"), IMEI: al.Devices[1][1], Reason: "test"}); err != nil {
			t.Fatal(err)
		}
		rec, _ := env.DB.LookupIMEI(ctx, al.Devices[1][0])
		if rec.State != store.StateVoided {
			t.Fatalf("the device group was not voided together: %s", rec.State)
		}
		err = env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S1"), IMEI: out.IMEIs[0], Reason: "scrapped"})
		wantCode(t, err, tacerr.Forbidden)
		err = env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S2"), IMEI: al.Devices[2][0], Reason: "scrapped"})
		wantCode(t, err, tacerr.NotOwner)

		// Rework: same IMEIs, new certificate, the old one revoked as superseded.
		dev2 := provtest.NewDevice(t)
		re, err := env.Service.Reissue(ctx, provisioner.ReissueInput{Actor: provtest.Operator, RequestID: "re-1", DeviceSerial: "D0", CSR: dev2.CSR})
		if err != nil {
			t.Fatal(err)
		}
		checkIssued(t, env, re, dev2)
		if re.CertSerial == out.CertSerial || fmt.Sprint(re.IMEIs) != fmt.Sprint(out.IMEIs) {
			t.Fatal("reissue must keep the IMEIs and change the certificate")
		}
		old, _ := env.DB.CertificateBySerial(ctx, out.CertSerial)
		if old.RevokedAt.IsZero() || old.RevokeReason != "superseded" {
			t.Fatalf("old certificate = %+v", old)
		}
		devRec, err := env.Service.Device(ctx, provtest.Operator, "D0")
		if err != nil || devRec.CertSerial != re.CertSerial || devRec.State != store.StateBound {
			t.Fatalf("device = %+v, %v", devRec, err)
		}
		// Revocation.
		err = env.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "D0", Reason: "bogus"})
		wantCode(t, err, tacerr.InvalidInput)
		if err := env.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "D0", Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		rec, _ = env.DB.LookupIMEI(ctx, out.IMEIs[1])
		if rec.State != store.StateRevoked {
			t.Fatalf("IMEI after revocation = %s", rec.State)
		}
		// An operator scraps a bound device before shipment.
		dev3 := provtest.NewDevice(t)
		b3, err := env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "b3", IMEIs: al.Devices[2], DeviceSerial: "D2", CSR: dev3.CSR})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Operator, IMEI: b3.IMEIs[0], Reason: "scrapped"}); err != nil {
			t.Fatal(err)
		}
		c3, _ := env.DB.CertificateBySerial(ctx, b3.CertSerial)
		if c3.RevokedAt.IsZero() {
			t.Fatal("scrapping a bound device must revoke its certificate")
		}
		ledgerOK(t, env)
	})
}

func TestConcurrentProvisioning(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		const stations, each = 16, 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		owner := map[imei.IMEI]string{}
		serials := map[string]bool{}
		errs := make(chan error, stations*each)
		for s := 0; s < stations; s++ {
			wg.Add(1)
			go func(s int) {
				defer wg.Done()
				st := []string{"S1", "S2"}[s%2]
				for i := 0; i < each; i++ {
					serial := fmt.Sprintf("C-%d-%d", s, i)
					out, err := provision(env, st, "req-"+serial, serial, provtest.NewDevice(t))
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					if serials[out.CertSerial] {
						errs <- fmt.Errorf("certificate serial %s issued twice", out.CertSerial)
					}
					serials[out.CertSerial] = true
					for _, m := range out.IMEIs {
						if prev, dup := owner[m]; dup {
							errs <- fmt.Errorf("IMEI %s given to %s and %s", m, prev, serial)
						}
						owner[m] = serial
					}
					mu.Unlock()
				}
			}(s)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rep := ledgerOK(t, env)
		if rep.IMEIs != int64(len(owner)) || len(owner) != stations*each*2 {
			t.Fatalf("ledger %d IMEIs, stations received %d", rep.IMEIs, len(owner))
		}
	})
}

// A request context with a station memo reads the station's record once:
// a station disabled after the request was authenticated finishes that
// request and is refused on the next one.
func TestStationMemo(t *testing.T) {
	env := provtest.New(t, store.SQLite)
	ctx := provisioner.WithStationMemo(context.Background())
	if _, err := env.Service.Station(ctx, "S1"); err != nil {
		t.Fatal(err)
	}
	if err := env.DB.DisableStation(context.Background(), "S1", "test"); err != nil {
		t.Fatal(err)
	}
	dev := provtest.NewDevice(t)
	if _, err := env.Service.Provision(ctx, provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "m1",
		DeviceSerial: "DM1", Product: "EX-1", CSR: dev.CSR}); err != nil {
		t.Fatalf("request authenticated before the disable: %v", err)
	}
	next := provisioner.WithStationMemo(context.Background())
	if _, err := env.Service.Station(next, "S1"); !tacerr.Is(err, tacerr.Forbidden) {
		t.Fatalf("next request: %v, want forbidden", err)
	}
	_, err := env.Service.Provision(context.Background(), provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "m2",
		DeviceSerial: "DM2", Product: "EX-1", CSR: provtest.NewDevice(t).CSR})
	wantCode(t, err, tacerr.Forbidden)
}

// With the ledger database lost, an enrolled station's lookup is
// unavailable and retryable, never unauthorized (issue 11: PostgreSQL
// unreachable answered 401 "station is not enrolled"); an unknown station
// is still unauthorized once the database is back.
func TestStationLookupDuringOutage(t *testing.T) {
	env := provtest.New(t, store.Postgres)
	ctx := context.Background()
	restore := storetest.Outage(t, env.DB)
	_, err := env.Service.Station(ctx, "S1")
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Unavailable || !e.Retryable() {
		t.Fatalf("station lookup during the outage = %v (code %s), want unavailable, retryable", err, tacerr.CodeOf(err))
	}
	dev := provtest.NewDevice(t)
	_, err = env.Service.Provision(ctx, provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "o1",
		DeviceSerial: "DO1", Product: "EX-1", CSR: dev.CSR})
	wantCode(t, err, tacerr.Unavailable)
	restore()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = env.Service.Station(ctx, "nobody")
		if !tacerr.Is(err, tacerr.Unavailable) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantCode(t, err, tacerr.Unauthorized)
}
