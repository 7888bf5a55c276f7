package provisioner_test

import (
	"context"
	"crypto"
	"testing"

	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestConcurrentReissue: a second reissue of a device while the first is
// between its intent and its binding is refused (invalid_state naming the
// request in flight) before it records anything. Both used to succeed, and
// whichever bound second revoked the other's certificate as superseded
// after its caller had been answered with it.
func TestConcurrentReissue(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		hs := &hookSigner{}
		env := provtest.New(t, d, provtest.WithSigner(func(s crypto.Signer) crypto.Signer { hs.Signer = s; return hs }))
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
