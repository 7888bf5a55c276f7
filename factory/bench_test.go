package factory

import (
	"testing"

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

// BenchmarkVerifyIssued is the station's check of one returned identity.
func BenchmarkVerifyIssued(b *testing.B) {
	pki := newPKI(b)
	dev, err := NewDevice("SN-BENCH-000001")
	if err != nil {
		b.Fatal(err)
	}
	m := mustIMEI(b, tacA, 10)
	resp := respFor(pki, dev.Serial(), pki.issue(b, dev.Serial(), dev.Public(), []imei.IMEI{m}), m)
	roots := rootPool(pki.root)
	pools := []PoolRange{{TAC: tacA, SNREnd: 999}}
	b.ResetTimer()
	for b.Loop() {
		if err := VerifyIssued(resp, roots, dev, pools); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifier is the same check with the issuer chain cached, as
// the simulator runs it.
func BenchmarkVerifier(b *testing.B) {
	pki := newPKI(b)
	dev, err := NewDevice("SN-BENCH-000001")
	if err != nil {
		b.Fatal(err)
	}
	m := mustIMEI(b, tacA, 10)
	resp := respFor(pki, dev.Serial(), pki.issue(b, dev.Serial(), dev.Public(), []imei.IMEI{m}), m)
	v := NewVerifier(rootPool(pki.root))
	pools := []PoolRange{{TAC: tacA, SNREnd: 999}}
	b.ResetTimer()
	for b.Loop() {
		if err := v.Verify(resp, dev, pools); err != nil {
			b.Fatal(err)
		}
	}
}
