package factory

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/tacline/tacline/factory/factorytest"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

func TestDeviceCSR(t *testing.T) {
	t.Parallel()
	dev, err := NewDevice("SN-0001")
	if err != nil {
		t.Fatal(err)
	}
	data, err := dev.CSR()
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("CSR is not one PEM CERTIFICATE REQUEST block: %q", data)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if csr.Subject.SerialNumber != "SN-0001" {
		t.Errorf("CSR subject serialNumber %q", csr.Subject.SerialNumber)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !pub.Equal(dev.Public()) {
		t.Errorf("CSR key %T is not the device's P-256 key", csr.PublicKey)
	}
	// The server's own intake rules accept it.
	if _, _, err := policy.ParseCSR(data, policy.DefaultCSRRules()); err != nil {
		t.Errorf("policy.ParseCSR refuses the device CSR: %v", err)
	}
	other, err := NewDevice("SN-0002")
	if err != nil {
		t.Fatal(err)
	}
	if other.key.Equal(dev.key) {
		t.Error("two devices share a key")
	}
}

func TestSignChallenge(t *testing.T) {
	t.Parallel()
	nonce := []byte("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name   string
		curve  elliptic.Curve
		digest func([]byte) []byte
	}{
		{"P-256 with SHA-256", elliptic.P256(), func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }},
		{"P-384 with SHA-384", elliptic.P384(), func(b []byte) []byte { s := sha512.Sum384(b); return s[:] }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dev, err := NewDeviceWithKey("SN-1", factorytest.GenKey(t, tc.curve))
			if err != nil {
				t.Fatal(err)
			}
			sig, err := dev.SignChallenge(nonce)
			if err != nil {
				t.Fatal(err)
			}
			if !ecdsa.VerifyASN1(&dev.key.PublicKey, tc.digest(nonce), sig) {
				t.Fatal("signature does not verify over the nonce")
			}
			if ecdsa.VerifyASN1(&dev.key.PublicKey, tc.digest([]byte("another nonce")), sig) {
				t.Fatal("signature verifies over another nonce")
			}
			// Round trip through the key file the demo writes.
			pemKey, err := dev.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(pemKey, []byte("-----BEGIN PRIVATE KEY-----")) {
				t.Errorf("KeyPEM is not PKCS#8 PEM: %.40q", pemKey)
			}
			k, err := ParseDeviceKey(pemKey)
			if err != nil {
				t.Fatal(err)
			}
			if !k.Equal(dev.key) {
				t.Fatal("ParseDeviceKey(KeyPEM()) is another key")
			}
			sig2, err := SignChallenge(k, nonce)
			if err != nil || !ecdsa.VerifyASN1(&dev.key.PublicKey, tc.digest(nonce), sig2) {
				t.Fatalf("signature with the parsed key does not verify: %v", err)
			}
		})
	}
	dev, err := NewDevice("SN-2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.SignChallenge(nil); !tacerr.Is(err, tacerr.InvalidInput) {
		t.Errorf("empty nonce: err = %v, want invalid_input", err)
	}
}

func TestNewDeviceRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, serial string
		key          *ecdsa.PrivateKey
		want         string
	}{
		{name: "empty serial", serial: "", key: factorytest.GenKey(t, elliptic.P256()), want: "device_serial"},
		{name: "slash", serial: "a/b", key: factorytest.GenKey(t, elliptic.P256()), want: "device_serial"},
		{name: "underscore", serial: "a_b", key: factorytest.GenKey(t, elliptic.P256()), want: "device_serial"},
		{name: "dot dot", serial: "..", key: factorytest.GenKey(t, elliptic.P256()), want: "device_serial"},
		{name: "too long", serial: strings.Repeat("A", 65), key: factorytest.GenKey(t, elliptic.P256()), want: "device_serial"},
		{name: "P-521 key", serial: "SN", key: factorytest.GenKey(t, elliptic.P521()), want: "key"},
		{name: "no key", serial: "SN", key: nil, want: "key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewDeviceWithKey(tc.serial, tc.key)
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidInput || e.Field != tc.want {
				t.Fatalf("err = %v, want invalid_input on field %s", err, tc.want)
			}
		})
	}
}

func TestParseDeviceKeyRefuses(t *testing.T) {
	t.Parallel()
	good, err := NewDevice("SN")
	if err != nil {
		t.Fatal(err)
	}
	goodPEM, _ := good.KeyPEM()
	p521 := factorytest.KeyPEM(t, factorytest.GenKey(t, elliptic.P521()))
	ecDER, _ := x509.MarshalECPrivateKey(good.key)
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	tests := []struct {
		name string
		in   []byte
		ok   bool
		msg  string
	}{
		{name: "PKCS#8", in: goodPEM, ok: true},
		{name: "SEC 1", in: sec1, ok: true},
		{name: "not PEM", in: []byte("hello"), msg: "not PEM"},
		{name: "two blocks", in: append(append([]byte{}, goodPEM...), goodPEM...), msg: "give exactly one"},
		{name: "certificate block", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), msg: "block type"},
		{name: "garbage in block", in: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), msg: "valid key"},
		{name: "P-521", in: p521, msg: "P-256 or P-384"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := ParseDeviceKey(tc.in)
			if tc.ok {
				if err != nil || !k.Equal(good.key) {
					t.Fatalf("ParseDeviceKey = %v, want the key", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) || tacerr.CodeOf(err) != tacerr.InvalidInput {
				t.Fatalf("err = %v, want invalid_input mentioning %q", err, tc.msg)
			}
		})
	}
}

func FuzzParseDeviceKey(f *testing.F) {
	dev, err := NewDevice("SN")
	if err != nil {
		f.Fatal(err)
	}
	k, _ := dev.KeyPEM()
	f.Add(k)
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----"))
	nonce := []byte("nonce")
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParseDeviceKey(data)
		if err != nil {
			if tacerr.CodeOf(err) != tacerr.InvalidInput {
				t.Fatalf("error without invalid_input code: %v", err)
			}
			return
		}
		c := key.Curve
		if c != elliptic.P256() && c != elliptic.P384() {
			t.Fatalf("accepted a key on %s", c.Params().Name)
		}
		sig, err := SignChallenge(key, nonce)
		if err != nil {
			t.Fatal(err)
		}
		var digest []byte
		if c == elliptic.P256() {
			s := sha256.Sum256(nonce)
			digest = s[:]
		} else {
			s := sha512.Sum384(nonce)
			digest = s[:]
		}
		if !ecdsa.VerifyASN1(&key.PublicKey, digest, sig) {
			t.Fatal("accepted key signs unverifiable challenges")
		}
	})
}

// TestCSRMatchesCreateCertificateRequest: the hand-encoded request is the one
// crypto/x509 makes for the same subject and key, byte for byte up to the
// signature, for P-256 and P-384 devices and serials of every character
// class; it verifies and the server's intake accepts it.
func TestCSRMatchesCreateCertificateRequest(t *testing.T) {
	t.Parallel()
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		for _, serial := range []string{"SN-0001", "A", "x.rev:2-1", strings.Repeat("9", policy.MaxDeviceSerial)} {
			key, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			dev, err := NewDeviceWithKey(serial, key)
			if err != nil {
				t.Fatal(err)
			}
			data, err := dev.CSR()
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(data)
			got, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.CheckSignature(); err != nil {
				t.Fatalf("%s %q: %v", curve.Params().Name, serial, err)
			}
			wantDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{SerialNumber: serial, CommonName: serial}}, key)
			if err != nil {
				t.Fatal(err)
			}
			want, err := x509.ParseCertificateRequest(wantDER)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.RawTBSCertificateRequest, want.RawTBSCertificateRequest) || got.SignatureAlgorithm != want.SignatureAlgorithm {
				t.Fatalf("%s %q: request info differs from crypto/x509's\n got %x\nwant %x", curve.Params().Name, serial, got.RawTBSCertificateRequest, want.RawTBSCertificateRequest)
			}
			if _, _, err := policy.ParseCSR(data, policy.DefaultCSRRules()); err != nil {
				t.Fatalf("%s %q: policy.ParseCSR: %v", curve.Params().Name, serial, err)
			}
		}
	}
}
