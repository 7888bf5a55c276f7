package provisioner_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"testing"

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
