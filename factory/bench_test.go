package factory

import (
	"context"
	"strings"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/factory/factorytest"
	"github.com/tacline/tacline/imei"
)

// BenchmarkDevice is a simulated device's own work: key and CSR.
func BenchmarkDevice(b *testing.B) {
	for b.Loop() {
		d, err := NewDevice("SN-BENCH-000001")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := d.CSR(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchIdentity is one issued identity to verify.
func benchIdentity(b *testing.B) (*testPKI, *Device, *wire.ProvisionResponse, []PoolRange) {
	pki := newPKI(b)
	dev, err := NewDevice("SN-BENCH-000001")
	if err != nil {
		b.Fatal(err)
	}
	m := imei.MustNew(tacA, 10)
	resp := factorytest.RespFor(pki, dev.Serial(), pki.Issue(b, dev.Serial(), dev.Public(), []imei.IMEI{m}), m)
	return pki, dev, resp, []PoolRange{{TAC: tacA, SNREnd: 999}}
}

// BenchmarkVerifyIssued is the station's check of one returned identity,
// validating the whole path each time.
func BenchmarkVerifyIssued(b *testing.B) {
	pki, dev, resp, pools := benchIdentity(b)
	roots := rootPool(pki.Root)
	for b.Loop() {
		if err := VerifyIssued(resp, roots, dev, pools); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifier is the same check with the issuer chain cached, as
// the simulator runs it.
func BenchmarkVerifier(b *testing.B) {
	pki, dev, resp, pools := benchIdentity(b)
	v := NewVerifier(rootPool(pki.Root))
	for b.Loop() {
		if err := v.Verify(resp, dev, pools); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClientProvision is the client's cost of one POST over a kept-alive
// mutual TLS connection (the server answers a fixed body at once).
func BenchmarkClientProvision(b *testing.B) {
	pki := newPKI(b)
	srv := pki.Serve(b, &faultServer{})
	c, _ := testClient(b, pki, srv, ClientConfig{})
	req := wire.ProvisionRequest{RequestID: "r", DeviceSerial: "SN-BENCH-000001", Product: "widget", CSR: strings.Repeat("A", 600)}
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Provision(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
