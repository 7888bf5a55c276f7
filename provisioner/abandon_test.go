package provisioner_test

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

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
