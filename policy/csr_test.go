package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"
)

func csrDER(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "ignored by the profile"},
		DNSNames: []string{"ignored.example"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func csrPEM(t testing.TB, key crypto.Signer, blockType string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: csrDER(t, key)})
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestParseCSRAccepts(t *testing.T) {
	t.Parallel()
	p256 := ecKey(t, elliptic.P256())
	p384 := ecKey(t, elliptic.P384())
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	withEd := DefaultCSRRules()
	withEd.AllowEd25519 = true
	tests := []struct {
		name  string
		data  []byte
		rules CSRRules
		want  crypto.PublicKey
	}{
		{name: "P-256 PEM", data: csrPEM(t, p256, "CERTIFICATE REQUEST"), rules: DefaultCSRRules(), want: p256.Public()},
		{name: "P-256 NEW CERTIFICATE REQUEST PEM", data: csrPEM(t, p256, "NEW CERTIFICATE REQUEST"), rules: DefaultCSRRules(), want: p256.Public()},
		{name: "P-256 PEM with surrounding whitespace", data: append(append([]byte("\n  "), csrPEM(t, p256, "CERTIFICATE REQUEST")...), "\n\n"...), rules: DefaultCSRRules(), want: p256.Public()},
		{name: "P-384 DER", data: csrDER(t, p384), rules: DefaultCSRRules(), want: p384.Public()},
		{name: "Ed25519 when allowed", data: csrDER(t, edKey), rules: withEd, want: edKey.Public()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			csr, pub, err := ParseCSR(tc.data, tc.rules)
			if err != nil {
				t.Fatalf("ParseCSR: %v", err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.want) {
				t.Fatalf("public key differs from the CSR's signer")
			}
			if csr.Subject.CommonName != "ignored by the profile" {
				t.Fatalf("csr not returned: %+v", csr.Subject)
			}
		})
	}
}

func TestParseCSRRefuses(t *testing.T) {
	t.Parallel()
	p256 := ecKey(t, elliptic.P256())
	good := csrDER(t, p256)
	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 0x01 // last octet of the ECDSA signature's s
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	goodPEM := csrPEM(t, p256, "CERTIFICATE REQUEST")
	tests := []struct {
		name string
		data []byte
		want string // in the message
	}{
		{name: "bad signature", data: badSig, want: "bad signature"},
		{name: "RSA-1024", data: csrDER(t, rsa1024), want: "RSA-1024"},
		{name: "P-224", data: csrDER(t, ecKey(t, elliptic.P224())), want: "P-224"},
		{name: "P-521 not in default rules", data: csrDER(t, ecKey(t, elliptic.P521())), want: "P-521"},
		{name: "Ed25519 not allowed by default", data: csrDER(t, edKey), want: "Ed25519 key"},
		{name: "oversized", data: append(bytes.Clone(goodPEM), bytes.Repeat([]byte{' '}, MaxCSRSize)...), want: "oversized"},
		{name: "garbage", data: []byte("\x01\x02 this is not a request"), want: "garbage"},
		{name: "empty", data: []byte(" \n"), want: "empty"},
		{name: "wrong PEM block type", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good}), want: "wrong PEM block type"},
		{name: "truncated PEM", data: goodPEM[:len(goodPEM)/2], want: "malformed PEM"},
		{name: "text before the PEM block", data: append([]byte("subject=CN=dev\n"), goodPEM...), want: "text before the first PEM block at line 1 (byte 0)"},
		{name: "trailing data after PEM", data: append(bytes.Clone(goodPEM), goodPEM...), want: "trailing data"},
		{name: "trailing data after DER", data: append(bytes.Clone(good), 0), want: "trailing data"},
		{name: "truncated DER", data: good[:len(good)-5], want: "not a PKCS#10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			csr, pub, err := ParseCSR(tc.data, DefaultCSRRules())
			if err == nil {
				t.Fatal("ParseCSR accepted the input")
			}
			if csr != nil || pub != nil {
				t.Fatal("ParseCSR returned a value with an error")
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.CSRInvalid || e.Field != "csr" {
				t.Fatalf("err = %v, want code csr_invalid on field csr", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestCSRRulesValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rules CSRRules
		field string // empty: valid
	}{
		{name: "default", rules: DefaultCSRRules()},
		{name: "ed25519 only", rules: CSRRules{AllowEd25519: true}},
		{name: "nothing accepted", rules: CSRRules{}, field: "csr.curves"},
		{name: "P-224 refused", rules: CSRRules{Curves: []string{"P-256", "P-224"}}, field: "csr.curves[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.rules.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Field != tc.field || e.Code != tacerr.InvalidConfig {
				t.Fatalf("err = %v, want invalid_config on %s", err, tc.field)
			}
		})
	}
}

// FuzzParseCSR checks that no input panics, that an accepted CSR always
// carries an allowed key and a verifying signature, and that every refusal is
// csr_invalid.
func FuzzParseCSR(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der := csrDER(f, key)
	f.Add(der)
	f.Add(csrPEM(f, key, "CERTIFICATE REQUEST"))
	f.Add(csrPEM(f, key, "NEW CERTIFICATE REQUEST"))
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	f.Add(der[:len(der)/2])
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{0x30, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, pub, err := ParseCSR(data, DefaultCSRRules())
		if err != nil {
			if !tacerr.Is(err, tacerr.CSRInvalid) {
				t.Fatalf("refusal with code %s: %v", tacerr.CodeOf(err), err)
			}
			return
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || (ec.Curve != elliptic.P256() && ec.Curve != elliptic.P384()) {
			t.Fatalf("accepted key %T", pub)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature does not verify: %v", err)
		}
	})
}

// BenchmarkParseCSR is the server's CSR intake per device: PEM decode,
// parse, key rules and the proof-of-possession signature check.
func BenchmarkParseCSR(b *testing.B) {
	data := csrPEM(b, ecKey(b, elliptic.P256()), "CERTIFICATE REQUEST")
	rules := DefaultCSRRules()
	for b.Loop() {
		if _, _, err := ParseCSR(data, rules); err != nil {
			b.Fatal(err)
		}
	}
}
