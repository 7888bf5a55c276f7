package provisioner_test

// Faults around the ledger: what is refused before anything is reserved,
// and what a request is told when another request or recovery got there
// first.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// weakDevice is a device whose key generator is broken: its private scalar
// is d, small enough for zlint's e_ecdsa_small_private_key.
func weakDevice(t *testing.T, c elliptic.Curve, d byte) *provtest.Device {
	t.Helper()
	raw := make([]byte, (c.Params().BitSize+7)/8)
	raw[len(raw)-1] = d
	k, err := ecdsa.ParseRawPrivateKey(c, raw)
	if err != nil {
		t.Fatal(err)
	}
	return provtest.DeviceOf(t, k)
}

// TestWeakDeviceKeyReservesNothing: a device key whose private scalar is
// trivially small (the lint e_ecdsa_small_private_key) is refused as
// csr_invalid before anything is reserved, by provisioning, bind and
// reissue; it used to be refused only by Prepare's lint, after the IMEIs
// were reserved and the intent recorded (lint_failed, the IMEIs then voided
// by recovery).
func TestWeakDeviceKeyReservesNothing(t *testing.T) {
	env := provtest.New(t, store.SQLite)
	ctx := context.Background()
	al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "wk-al", Pool: "F1-A", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provision(env, "S1", "wk-ok", "SN-WK-OK", provtest.NewDevice(t)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		dev  *provtest.Device
	}{
		{"P-256", weakDevice(t, elliptic.P256(), 7)},
		{"P-384", weakDevice(t, elliptic.P384(), 200)}, // zlint's own search, not the P-256 table
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := storetest.ReadCounts(t, env.DB)
			for _, call := range []struct {
				what string
				run  func() error
			}{
				{"provision", func() error { _, err := provision(env, "S1", "wk-p-"+tc.name, "SN-WK-"+tc.name, tc.dev); return err }},
				{"bind", func() error {
					_, err := env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "wk-b-" + tc.name,
						IMEIs: al.Devices[0], DeviceSerial: "SN-WKB-" + tc.name, CSR: tc.dev.CSR})
					return err
				}},
				{"reissue", func() error {
					_, err := env.Service.Reissue(ctx, provisioner.ReissueInput{Actor: provtest.Operator, RequestID: "wk-r-" + tc.name,
						DeviceSerial: "SN-WK-OK", CSR: tc.dev.CSR})
					return err
				}},
			} {
				err := call.run()
				wantCode(t, err, tacerr.CSRInvalid)
				if e, _ := tacerr.As(err); e.Field != "csr" {
					t.Fatalf("%s: field = %q, want csr", call.what, e.Field)
				}
				if d := before.Diff(storetest.ReadCounts(t, env.DB)); d != "" {
					t.Fatalf("%s with a weak key changed the ledger: %s", call.what, d)
				}
			}
		})
	}
	ledgerOK(t, env)
}

// TestReplayAbandonedWhileSigning: a replay of an intent older than the
// intent timeout signs while recovery abandons the intent. The binding
// then finds the intent no longer pending; the station must be told the
// request was abandoned and what to do (invalid_state on request_id,
// naming what became of the IMEIs), as a replay after the abandonment is,
// not a bare conflict. Nothing is bound; the ledger stays consistent.
func TestReplayAbandonedWhileSigning(t *testing.T) {
	var fs *provtest.FaultySigner
	hook := &hookSigner{}
	env := provtest.New(t, store.SQLite, provtest.WithSigner(func(s crypto.Signer) crypto.Signer {
		fs = &provtest.FaultySigner{Signer: s}
		hook.Signer = fs
		return hook
	}))
	ctx := context.Background()
	al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "ab-al", Pool: "F1-A", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	dev, bdev := provtest.NewDevice(t), provtest.NewDevice(t)
	bind := func() error {
		_, err := env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "ab-b", IMEIs: al.Devices[0], DeviceSerial: "SN-AB-B", CSR: bdev.CSR})
		return err
	}
	// Two intents left pending by a failed signature; a success between
	// them clears the known-down signer (else the second request would be
	// refused before its intent).
	fs.Down.Store(true)
	wantCode(t, bind(), tacerr.HSMUnavailable)
	fs.Down.Store(false)
	if _, err := provision(env, "S1", "ab-ok", "SN-AB-OK", provtest.NewDevice(t)); err != nil {
		t.Fatal(err)
	}
	fs.Down.Store(true)
	_, err = provision(env, "S1", "ab-p", "SN-AB-P", dev)
	wantCode(t, err, tacerr.HSMUnavailable)
	fs.Down.Store(false)
	env.Clock.Add(6 * time.Minute)
	// The provision's replay signs; recovery abandons both intents
	// meanwhile.
	hook.setHook(func() {
		if _, err := env.Service.Recover(ctx); err != nil {
			t.Errorf("recovery: %v", err)
		}
	})
	for _, tc := range []struct {
		name, says string
		replay     func() error
	}{
		{"provision during recovery", "IMEIs voided", func() error { _, err := provision(env, "S1", "ab-p", "SN-AB-P", dev); return err }},
		{"provision after recovery", "IMEIs voided", func() error { _, err := provision(env, "S1", "ab-p", "SN-AB-P", dev); return err }},
		{"bind after recovery", "stay pre-allocated", bind},
	} {
		err := tc.replay()
		wantCode(t, err, tacerr.InvalidState)
		if e, _ := tacerr.As(err); e.Field != "request_id" || !strings.Contains(err.Error(), "abandoned") || !strings.Contains(err.Error(), tc.says) {
			t.Fatalf("%s: error = %v (field %q), want one on request_id saying the request was abandoned and its %s", tc.name, err, e.Field, tc.says)
		}
	}
	if hook.hook.Load() != nil {
		t.Fatal("the replay did not sign: the race was not exercised")
	}
	if d, err := env.DB.Device(ctx, "SN-AB-P"); err != nil || d != nil {
		t.Fatalf("device of the abandoned intent = %+v, %v", d, err)
	}
	ledgerOK(t, env)
}

// TestAlreadyProvisionedIMEIs: device_already_provisioned lists the
// IMEIs of the device as recorded, which a station may program. A device
// whose first request is still pending (its signature failed) has none
// yet: the IMEIs reserved for it are voided if that request is abandoned,
// so they must not be handed out, and the message must say the device is
// being provisioned (replay that request), not that it is provisioned
// (reissue). IMEIs of an abandoned earlier attempt for the same serial are
// not the device's either.
func TestAlreadyProvisionedIMEIs(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		var fs *provtest.FaultySigner
		env := provtest.New(t, d, provtest.WithFaultySigner(&fs))
		ctx := t.Context()
		fs.Down.Store(true)
		_, err := provision(env, "S1", "ap-1", "SN-AP", provtest.NewDevice(t))
		wantCode(t, err, tacerr.HSMUnavailable)
		fs.Down.Store(false)

		existing := func(err error) []string {
			t.Helper()
			wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
			var ap *provisioner.AlreadyProvisionedError
			if !errors.As(err, &ap) {
				t.Fatalf("%v is not an AlreadyProvisionedError", err)
			}
			var out []string
			for _, m := range ap.ExistingIMEIs() {
				out = append(out, m.String())
			}
			return out
		}
		_, err = provision(env, "S1", "ap-2", "SN-AP", provtest.NewDevice(t))
		if got := existing(err); len(got) != 0 {
			t.Fatalf("a device whose provisioning is pending was answered with IMEIs %v, which recovery voids", got)
		}
		if msg := err.Error(); !strings.Contains(msg, "being provisioned") || strings.Contains(msg, "reissue") {
			t.Fatalf("message for a pending device: %q, want it to say the device is being provisioned, not to reissue it", msg)
		}

		env.Clock.Add(6 * time.Minute)
		if n, err := env.Service.Recover(ctx); err != nil || n != 2 {
			t.Fatalf("recovery voided %d (%v), want 2", n, err)
		}
		out, err := provision(env, "S1", "ap-3", "SN-AP", provtest.NewDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range out.IMEIs {
			want = append(want, m.String())
		}
		_, err = provision(env, "S1", "ap-4", "SN-AP", provtest.NewDevice(t))
		if got := existing(err); !slices.Equal(got, want) {
			t.Fatalf("existing IMEIs = %v, want the device's %v (not the abandoned attempt's)", got, want)
		}
		if !strings.Contains(err.Error(), "reissue") {
			t.Fatalf("message for a provisioned device: %q", err)
		}
		ledgerOK(t, env)
	})
}

// TestConcurrentReissue: a second reissue of a device while the first is
// between its intent and its binding is refused (invalid_state naming the
// request in flight) before it records anything. Both used to succeed, and
// whichever bound second revoked the other's certificate as superseded
// after its caller had been answered with it.
func TestConcurrentReissue(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env, hs := hookedEnv(t, d)
		ctx := context.Background()
		if _, err := provision(env, "S1", "cr-0", "SN-CR", provtest.NewDevice(t)); err != nil {
			t.Fatal(err)
		}
		reissue := func(id string) (*provisioner.Issued, error) {
			return env.Service.Reissue(ctx, provisioner.ReissueInput{Actor: provtest.Operator, RequestID: id, DeviceSerial: "SN-CR", CSR: provtest.NewDevice(t).CSR})
		}
		var errB error
		hs.setHook(func() { _, errB = reissue("cr-b") }) // while cr-a signs
		outA, err := reissue("cr-a")
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, errB, tacerr.InvalidState)
		if is, err := env.DB.IssuanceByRequestID(ctx, "cr-b"); err != nil || is != nil {
			t.Fatalf("the refused reissue recorded an intent: %+v, %v", is, err)
		}
		dev, err := env.DB.Device(ctx, "SN-CR")
		if err != nil || dev.CertSerial != outA.CertSerial {
			t.Fatalf("device certificate %+v, %v; want the completed reissue's %s", dev, err, outA.CertSerial)
		}
		// Once it completed, the device can be reissued again.
		outC, err := reissue("cr-c")
		if err != nil {
			t.Fatal(err)
		}
		if dev, _ := env.DB.Device(ctx, "SN-CR"); dev.CertSerial != outC.CertSerial {
			t.Fatalf("device certificate %s, want %s", dev.CertSerial, outC.CertSerial)
		}
		ledgerOK(t, env)
	})
}

// TestKeyReusedReservesNothing: two requests present one device key for
// two devices at once. Both pass the key check (the ledger's key owner)
// before either reserved; the one that reserves second used to reserve
// its IMEIs, sign, and be refused key_reused only at binding (the key was
// claimed there), its IMEIs then voided and one signature spent. Now the
// key is claimed in the reservation's transaction (store.claimKeys): the
// second reservation fails whole, key_reused, with nothing reserved or
// signed. A request that starts once the first reserved is refused by
// the key check itself.
func TestKeyReusedReservesNothing(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env, hs := hookedEnv(t, d)
		ctx := context.Background()
		signatures := countSignatures(env)
		dev := provtest.NewDevice(t)
		var errB error
		bChecked, aReserved, bDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
		var calls atomic.Int32
		restore := provisioner.OnPossessionCheck(func() {
			switch calls.Add(1) {
			case 1: // kr-a, past its key check: kr-b runs past its own before kr-a reserves
				go func() {
					defer close(bDone)
					_, errB = provision(env, "S1", "kr-b", "SN-KR-B", dev)
				}()
				<-bChecked
			case 2: // kr-b, past its key check (no claim yet): it reserves once kr-a did
				close(bChecked)
				<-aReserved
			}
		})
		defer restore()
		hs.setHook(func() { close(aReserved); <-bDone }) // kr-a reserved and is about to sign
		outA, errA := provision(env, "S1", "kr-a", "SN-KR-A", dev)
		restore()
		if n := signatures.Load(); n != 1 {
			t.Fatalf("%d signatures for two requests with one key, want 1", n)
		}
		if errA != nil {
			t.Fatal(errA)
		}
		wantCode(t, errB, tacerr.KeyReused)
		if _, err := env.DB.ReservationByRequestID(ctx, "kr-b"); !tacerr.Is(err, tacerr.ReservationNotFound) && !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("the refused request's reservation: %v; want none", err)
		}
		checkIssued(t, env, outA, dev)
		// Started after kr-a reserved, a third is refused by the key check.
		_, err := provision(env, "S1", "kr-c", "SN-KR-C", dev)
		wantCode(t, err, tacerr.KeyReused)
		if n := signatures.Load(); n != 1 {
			t.Fatalf("%d signatures, want 1", n)
		}
		// The refused devices can be provisioned at once with other keys.
		for _, sn := range []string{"SN-KR-B", "SN-KR-C"} {
			if _, err := provision(env, "S1", "kr-new-"+sn, sn, provtest.NewDevice(t)); err != nil {
				t.Fatalf("%s with a new key: %v", sn, err)
			}
		}
		if rep := ledgerOK(t, env); rep.IMEIs != 6 {
			t.Fatalf("ledger holds %d IMEIs, want 6 (3 devices; the refused requests reserved nothing)", rep.IMEIs)
		}
	})
}

// TestAbandonReleasesKey: an intent whose signature failed holds its
// device's key; once it is abandoned (recovery, after the intent timeout),
// the key is free again, for the same device under a new request id or
// for another device.
func TestAbandonReleasesKey(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		var fs *provtest.FaultySigner
		env := provtest.New(t, d, provtest.WithFaultySigner(&fs))
		ctx := context.Background()
		dev := provtest.NewDevice(t)
		failSignature(t, env, fs, "ak-1", "SN-AK-1", dev)
		_, err := provision(env, "S1", "ak-2", "SN-AK-2", dev)
		wantCode(t, err, tacerr.KeyReused) // claimed by the pending intent
		env.Clock.Add(6 * time.Minute)
		if _, err := env.Service.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := provision(env, "S1", "ak-3", "SN-AK-2", dev); err != nil {
			t.Fatalf("the key after its intent was abandoned: %v", err)
		}
		ledgerOK(t, env)
	})
}

// TestVoidDuringPendingIntent: a request's signature fails (an HSM outage)
// after its intent was recorded, and its IMEIs are voided before any replay
// (a provisioning reservation by its station, a pre-allocated group too).
// Each replay of the request id used to sign a new certificate that could
// never be bound (its IMEIs are VOIDED), and left the intent pending for the
// next replay to sign again. Now the void abandons the intent with its
// IMEIs: every replay is answered invalid_state saying the IMEIs were
// voided, and nothing is signed.
func TestVoidDuringPendingIntent(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		var fs *provtest.FaultySigner
		env := provtest.New(t, d, provtest.WithFaultySigner(&fs))
		ctx := context.Background()
		signatures := countSignatures(env)
		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "vp-al", Pool: "F1-A", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		dev, devB := provtest.NewDevice(t), provtest.NewDevice(t)
		prov := func() (*provisioner.Issued, error) { return provision(env, "S1", "vp-1", "SN-VP", dev) }
		bind := func() (*provisioner.Issued, error) {
			return env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: "vp-b", IMEIs: al.Devices[0], DeviceSerial: "SN-VB", CSR: devB.CSR})
		}
		for _, tc := range []struct {
			name string
			do   func() (*provisioner.Issued, error)
			id   string
		}{{"provision", prov, "vp-1"}, {"bind", bind, "vp-b"}} {
			if err := env.Issuer.Ready(ctx); err != nil { // the signer is back: a probe signature clears the last failure
				t.Fatal(err)
			}
			fs.Down.Store(true)
			_, err := tc.do()
			wantCode(t, err, tacerr.HSMUnavailable)
			fs.Down.Store(false)
			is, err := env.DB.IssuanceByRequestID(ctx, tc.id)
			if err != nil || is == nil || is.State != store.IssuancePending {
				t.Fatalf("%s: intent after a failed signature = %+v, %v", tc.name, is, err)
			}
			recs, err := env.DB.GroupIMEIs(ctx, is.ReservationID, is.Group)
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S1"), IMEI: recs[0].IMEI, Reason: "scrapped"}); err != nil {
				t.Fatal(err)
			}
			before := signatures.Load()
			var errs []error
			for i := 0; i < 3; i++ {
				out, err := tc.do()
				if out != nil {
					t.Fatalf("%s: replay %d after the void was answered with a certificate", tc.name, i)
				}
				errs = append(errs, err)
			}
			if n := signatures.Load() - before; n != 0 {
				t.Fatalf("%s: %d signatures for 3 replays of a request whose IMEIs were voided, want 0", tc.name, n)
			}
			for i, err := range errs {
				wantCode(t, err, tacerr.InvalidState)
				if !strings.Contains(err.Error(), "voided (scrapped)") {
					t.Fatalf("%s: replay %d after the void = %v; want the void named", tc.name, i, err)
				}
			}
			if c, err := env.DB.CertificateBySerial(ctx, is.CertSerial); err != nil || c != nil {
				t.Fatalf("%s: certificate recorded for the voided intent: %+v, %v", tc.name, c, err)
			}
			if is, err := env.DB.IssuanceByRequestID(ctx, tc.id); err != nil || is.State != store.IssuanceAbandoned {
				t.Fatalf("%s: intent after the void = %+v, %v; want abandoned", tc.name, is, err)
			}
		}
		// The devices' serials were released with the intents: both can be
		// provisioned at once, with new request ids.
		for _, sn := range []string{"SN-VP", "SN-VB"} {
			if _, err := provision(env, "S1", "vp-new-"+sn, sn, provtest.NewDevice(t)); err != nil {
				t.Fatalf("%s with a new request id: %v", sn, err)
			}
		}
		ledgerOK(t, env)
	})
}

// TestBindChecksApproval: IMEIs pre-allocated while their TAC was approved
// for the pool's market are bound after the approval lapsed. Provision
// refuses such a device (tac_not_approved) before it reserves anything;
// Bind skipped the check and certified it. Now both run the one check
// (checkApproval) before anything is recorded or signed.
func TestBindChecksApproval(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		signatures := countSignatures(env)
		now := env.Clock.Now()
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		const tac = 100103
		if err := env.DB.AddTACs(ctx, []catalog.TAC{{TAC: tac, Brand: provtest.Manufacturer, ModelName: "EX-L", DeviceType: "Module",
			RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 1, AllocationDate: today.AddDate(-1, 0, 0),
			Approvals: []catalog.Approval{{Market: "DE", Reference: "DE-L", ValidFrom: today.AddDate(-1, 0, 0), ValidUntil: today}}}}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := env.DB.CreatePool(ctx, store.Pool{Name: "F4-L", TAC: tac, SNRStart: 0, SNREnd: 999, Factory: "F4", Line: "L1", Product: "EX-L", Market: "DE"}, "test"); err != nil {
			t.Fatal(err)
		}
		if err := env.DB.EnrollStation(ctx, store.StationRecord{ID: "S4", Factory: "F4", Line: "L1", Pools: []string{"F4-L"}}, "test"); err != nil {
			t.Fatal(err)
		}
		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S4"), RequestID: "ap-al", Pool: "F4-L", Count: 2})
		if err != nil {
			t.Fatal(err)
		}
		env.Clock.Add(48 * time.Hour) // the approval's last day has passed
		_, err = env.Service.Provision(ctx, provisioner.ProvisionInput{Actor: provtest.Actor("S4"), RequestID: "ap-p", DeviceSerial: "SN-AP-P",
			Product: "EX-L", CSR: provtest.NewDevice(t).CSR})
		wantCode(t, err, tacerr.TACNotApproved)
		_, err = env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S4"), RequestID: "ap-b", IMEIs: al.Devices[0],
			DeviceSerial: "SN-AP-B", CSR: provtest.NewDevice(t).CSR})
		wantCode(t, err, tacerr.TACNotApproved)
		if e, _ := tacerr.As(err); e.Field != "imeis" {
			t.Fatalf("field = %q, want imeis", e.Field)
		}
		if n := signatures.Load(); n != 0 {
			t.Fatalf("%d signatures for devices of a TAC not approved, want 0", n)
		}
		for _, id := range []string{"ap-p", "ap-b"} {
			if is, err := env.DB.IssuanceByRequestID(ctx, id); err != nil || is != nil {
				t.Fatalf("refused request %s recorded an intent: %+v, %v", id, is, err)
			}
		}
		if rec, err := env.DB.LookupIMEI(ctx, al.Devices[0][0]); err != nil || rec.State != store.StateReserved {
			t.Fatalf("pre-allocated IMEI after the refused bind = %+v, %v; want RESERVED", rec, err)
		}
		ledgerOK(t, env)
	})
}

// TestConcurrentBindsOfOneGroup: two stations bind one pre-allocated group
// (one label scanned twice) to two devices at once. Both used to pass the
// group's RESERVED check, record their intents and sign; the loser learnt
// it lost only when its binding failed, one HSM signature wasted. Now the
// bind intent claims the group (store.Tx.InsertIssuance): the second bind,
// started while the first signs, is refused invalid_state before it
// records or signs anything, and its device serial stays free.
func TestConcurrentBindsOfOneGroup(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env, hs := hookedEnv(t, d)
		ctx := context.Background()
		signatures := countSignatures(env)
		al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "cb-al", Pool: "F1-A", Count: 1})
		if err != nil {
			t.Fatal(err)
		}
		bind := func(id, serial string) (*provisioner.Issued, error) {
			return env.Service.Bind(ctx, provisioner.BindInput{Actor: provtest.Actor("S1"), RequestID: id, IMEIs: al.Devices[0],
				DeviceSerial: serial, CSR: provtest.NewDevice(t).CSR})
		}
		var errB error
		hs.setHook(func() { _, errB = bind("cb-b", "SN-CB-B") }) // while cb-a signs
		outA, errA := bind("cb-a", "SN-CB-A")
		if n := signatures.Load(); n != 1 {
			t.Fatalf("%d signatures for two binds of one group, want 1 (the loser refused before it signs)", n)
		}
		if errA != nil {
			t.Fatal(errA)
		}
		wantCode(t, errB, tacerr.InvalidState)
		if !strings.Contains(errB.Error(), `"cb-a"`) {
			t.Fatalf("refusal %q does not name the bind in flight", errB)
		}
		if is, err := env.DB.IssuanceByRequestID(ctx, "cb-b"); err != nil || is != nil {
			t.Fatalf("the refused bind recorded an intent: %+v, %v", is, err)
		}
		for _, m := range al.Devices[0] {
			if rec, err := env.DB.LookupIMEI(ctx, m); err != nil || rec.State != store.StateBound || rec.CertSerial != outA.CertSerial {
				t.Fatalf("IMEI %s = %+v, %v; want BOUND to the winner's certificate", m, rec, err)
			}
		}
		// Once bound, a bind of the group is refused before its intent as before.
		_, err = bind("cb-c", "SN-CB-C")
		wantCode(t, err, tacerr.InvalidState)
		if n := signatures.Load(); n != 1 {
			t.Fatalf("%d signatures, want 1", n)
		}
		// The loser's device serial was never claimed.
		if _, err := provision(env, "S1", "cb-p", "SN-CB-B", provtest.NewDevice(t)); err != nil {
			t.Fatalf("the refused bind's device, provisioned: %v", err)
		}
		ledgerOK(t, env)
	})
}

// TestReplayOfPendingIntentWithVoidedIMEIs: a ledger written before Void
// abandoned the pending intents of the group it voided (4bec96c) can hold a
// pending intent whose IMEIs are VOIDED. Its replay signed a certificate at
// every call (none could be bound). Now the replay sees the voided IMEI
// before it signs, abandons the intent and answers invalid_state naming the
// void; the device serial is free for a new request id.
func TestReplayOfPendingIntentWithVoidedIMEIs(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		var fs *provtest.FaultySigner
		env := provtest.New(t, d, provtest.WithFaultySigner(&fs))
		ctx := context.Background()
		signatures := countSignatures(env)
		dev := provtest.NewDevice(t)
		failSignature(t, env, fs, "old-1", "SN-OLD", dev)
		if err := env.Issuer.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		is, err := env.DB.IssuanceByRequestID(ctx, "old-1")
		if err != nil || is == nil || is.State != store.IssuancePending {
			t.Fatalf("intent after a failed signature = %+v, %v", is, err)
		}
		// The state the code before 4bec96c left: the group's IMEIs voided
		// by the station, the intent still pending.
		if err := env.DB.InTx(ctx, func(tx *store.Tx) error {
			_, err := storetest.Exec(tx, `UPDATE imeis SET state = 'VOIDED', reason = 'scrapped', voided_at = 1 WHERE reservation_id = ? AND grp = ?`, is.ReservationID, is.Group)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		before := signatures.Load()
		for i := 0; i < 3; i++ {
			out, err := provision(env, "S1", "old-1", "SN-OLD", dev)
			if out != nil {
				t.Fatalf("replay %d of an intent whose IMEIs are voided was answered with a certificate", i)
			}
			wantCode(t, err, tacerr.InvalidState)
			if !strings.Contains(err.Error(), "voided (scrapped)") {
				t.Fatalf("replay %d = %v; want the void named", i, err)
			}
		}
		if n := signatures.Load() - before; n != 0 {
			t.Fatalf("%d signatures for 3 replays of an intent whose IMEIs are voided, want 0", n)
		}
		if is, err := env.DB.IssuanceByRequestID(ctx, "old-1"); err != nil || is.State != store.IssuanceAbandoned {
			t.Fatalf("intent after the replays = %+v, %v; want abandoned", is, err)
		}
		if _, err := provision(env, "S1", "old-2", "SN-OLD", provtest.NewDevice(t)); err != nil {
			t.Fatalf("the serial with a new request id: %v", err)
		}
		ledgerOK(t, env)
	})
}

// countSignatures counts the device certificates env's service signs from
// now on.
func countSignatures(env *provtest.Env) *atomic.Int64 {
	var n atomic.Int64
	env.Service.SetSignObserver(func(time.Duration) { n.Add(1) })
	return &n
}
