package verify_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/verifytest"
)

// FuzzParseCRL: ParseCRL returns a CRL or an error naming the field crl;
// a parsed CRL never makes a check panic, and one not signed by the
// issuer is an error, never a verdict.
func FuzzParseCRL(f *testing.F) {
	fx := setup(f)
	now := fx.env.Clock.Now()
	good := fx.crlWith(f, now, verify.SerialHex(fx.rev.Issued.Certificate))
	f.Add(good.Raw)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good.Raw}))
	f.Add(fx.lookAlike.CRL(f, now).Raw)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x00})
	in := fx.a.Input(f, verifytest.Nonce(f))
	in.At = now
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := verify.ParseCRL(data)
		if err != nil {
			if e, ok := tacerr.As(err); !ok || e.Field != "crl" {
				t.Fatalf("error without the field: %v", err)
			}
			return
		}
		res, err := verify.Check(context.Background(), in, fx.trust, verify.NewCRLSet([]*x509.RevocationList{l}), nil)
		if err == nil && res.Verdict == verify.Genuine && l.CheckSignatureFrom(fx.env.Issuing) != nil {
			t.Fatalf("genuine on a CRL the issuer did not sign")
		}
	})
}
