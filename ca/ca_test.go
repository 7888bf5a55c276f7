package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/tacerr"
)

var now = time.Now().UTC().Truncate(time.Second)

func key(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type hierarchy struct {
	root, issuing, station *x509.Certificate
	rootKey, issuingKey    crypto.Signer
	stationKey             crypto.Signer
}

func newHierarchy(t testing.TB, c elliptic.Curve) hierarchy {
	t.Helper()
	h := hierarchy{rootKey: key(t, c), issuingKey: key(t, c), stationKey: key(t, c)}
	var err error
	if h.root, err = SelfSignedRoot(h.rootKey, pkix.Name{CommonName: "Root", Organization: []string{"Acme"}}, ValidFor(now, 20*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if h.issuing, err = IssuingCA(h.root, h.rootKey, h.issuingKey.Public(), pkix.Name{CommonName: "Issuing", Organization: []string{"Acme"}}, ValidFor(now, 10*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if h.station, err = StationCA(h.root, h.rootKey, h.stationKey.Public(), pkix.Name{CommonName: "Stations", Organization: []string{"Acme"}}, ValidFor(now, 10*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCACertificates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		curve  elliptic.Curve
		sigAlg x509.SignatureAlgorithm
	}{
		{name: "P-256", curve: elliptic.P256(), sigAlg: x509.ECDSAWithSHA256},
		{name: "P-384", curve: elliptic.P384(), sigAlg: x509.ECDSAWithSHA384},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHierarchy(t, tc.curve)
			for _, c := range []*x509.Certificate{h.root, h.issuing, h.station} {
				if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || len(c.SubjectKeyId) != 20 {
					t.Fatalf("%s: CA fields wrong", c.Subject)
				}
				if c.SignatureAlgorithm != tc.sigAlg || c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 121 {
					t.Fatalf("%s: sigalg %v serial %v", c.Subject, c.SignatureAlgorithm, c.SerialNumber)
				}
			}
			if h.root.MaxPathLen != -1 || len(h.root.AuthorityKeyId) != 0 && !bytes.Equal(h.root.AuthorityKeyId, h.root.SubjectKeyId) {
				t.Fatalf("root path length %d", h.root.MaxPathLen)
			}
			for _, c := range []*x509.Certificate{h.issuing, h.station} {
				if c.MaxPathLen != 0 || !c.MaxPathLenZero || !bytes.Equal(c.AuthorityKeyId, h.root.SubjectKeyId) {
					t.Fatalf("%s: pathLen %d AKID %x", c.Subject, c.MaxPathLen, c.AuthorityKeyId)
				}
				if err := c.CheckSignatureFrom(h.root); err != nil {
					t.Fatal(err)
				}
			}
			if err := CheckCertMatchesKey(h.issuing, h.issuingKey.Public()); err != nil {
				t.Fatal(err)
			}
			if err := CheckCertMatchesKey(h.issuing, h.rootKey.Public()); !tacerr.Is(err, tacerr.InvalidInput) {
				t.Fatalf("mismatched key: %v", err)
			}
		})
	}
}

func TestCARefuses(t *testing.T) {
	t.Parallel()
	h := newHierarchy(t, elliptic.P256())
	other := key(t, elliptic.P256())
	tests := []struct {
		name string
		run  func() error
	}{
		{name: "no common name", run: func() error {
			_, err := SelfSignedRoot(other, pkix.Name{}, ValidFor(now, time.Hour))
			return err
		}},
		{name: "inverted validity", run: func() error {
			_, err := SelfSignedRoot(other, pkix.Name{CommonName: "x"}, Validity{NotBefore: now, NotAfter: now.Add(-time.Hour)})
			return err
		}},
		{name: "root signer does not match root", run: func() error {
			_, err := IssuingCA(h.root, other, other.Public(), pkix.Name{CommonName: "x"}, ValidFor(now, time.Hour))
			return err
		}},
		{name: "parent is not a CA", run: func() error {
			leaf := *h.issuing
			leaf.IsCA = false
			_, err := IssuingCA(&leaf, h.issuingKey, other.Public(), pkix.Name{CommonName: "x"}, ValidFor(now, time.Hour))
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.run(); !tacerr.Is(err, tacerr.InvalidInput) {
				t.Fatalf("err = %v, want invalid_input", err)
			}
		})
	}
}

func TestStationCert(t *testing.T) {
	t.Parallel()
	h := newHierarchy(t, elliptic.P256())
	given := key(t, elliptic.P256())
	tests := []struct {
		name    string
		pub     crypto.PublicKey
		st      Station
		uris    string
		field   string // refusal expected on this field
		wantKey bool
	}{
		{name: "station with roles and generated key", st: Station{ID: "line1-st04", Factory: "Plant Berlin", Line: "L1", Roles: []string{"provision"}}, uris: "urn:tacline:station:line1-st04 urn:tacline:role:provision", wantKey: true},
		{name: "given key", pub: given.Public(), st: Station{ID: "st-9"}, uris: "urn:tacline:station:st-9"},
		{name: "role only", st: Station{Roles: []string{"auditor", "admin"}}, uris: "urn:tacline:role:auditor urn:tacline:role:admin", wantKey: true},
		{name: "nothing", st: Station{}, field: "station.id"},
		{name: "bad id", st: Station{ID: "st 4"}, field: "station.id"},
		{name: "bad role", st: Station{ID: "st4", Roles: []string{"Admin"}}, field: "station.roles[0]"},
		{name: "long factory", st: Station{ID: "st4", Factory: strings.Repeat("f", 65)}, field: "station.factory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cert, k, err := StationCert(h.station, h.stationKey, tc.pub, tc.st, ValidFor(now, 365*24*time.Hour))
			if tc.field != "" {
				if e, ok := tacerr.As(err); !ok || e.Field != tc.field || cert != nil {
					t.Fatalf("err = %v, want a refusal on %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, u := range cert.URIs {
				uris = append(uris, u.String())
			}
			if strings.Join(uris, " ") != tc.uris {
				t.Fatalf("URIs %v", uris)
			}
			if cert.IsCA || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Fatal("station certificate usages wrong")
			}
			if (k != nil) != tc.wantKey {
				t.Fatalf("generated key returned: %v", k != nil)
			}
			pub := tc.pub
			if k != nil {
				pub = k.Public()
			}
			if err := CheckCertMatchesKey(cert, pub); err != nil {
				t.Fatal(err)
			}
			roots, inter := x509.NewCertPool(), x509.NewCertPool()
			roots.AddCert(h.root)
			inter.AddCert(h.station)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOpenSSLVerifiesStation checks the station chain with the openssl binary.
func TestOpenSSLVerifiesStation(t *testing.T) {
	t.Parallel()
	h := newHierarchy(t, elliptic.P256())
	cert, _, err := StationCert(h.station, h.stationKey, nil, Station{ID: "st-1", Roles: []string{"provision"}}, ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"root.pem": ChainPEM(h.root), "station-ca.pem": ChainPEM(h.station), "st.pem": ChainPEM(cert)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", filepath.Join(dir, "root.pem"), "-untrusted", filepath.Join(dir, "station-ca.pem"), filepath.Join(dir, "st.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "st.pem: OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func TestCSRForKey(t *testing.T) {
	t.Parallel()
	k := key(t, elliptic.P384())
	der, err := CSRForKey(k, pkix.Name{CommonName: "Issuing 2", Organization: []string{"Acme"}})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil || csr.Subject.CommonName != "Issuing 2" || !k.PublicKey.Equal(csr.PublicKey) {
		t.Fatalf("CSR %v %v", csr, err)
	}
}

func TestParseChainPEM(t *testing.T) {
	t.Parallel()
	h := newHierarchy(t, elliptic.P256())
	chain := ChainPEM(h.issuing, h.root)
	tests := []struct {
		name string
		data []byte
		n    int    // certificates expected
		want string // error text expected
	}{
		{name: "two certificates", data: chain, n: 2},
		{name: "surrounding whitespace", data: append(append([]byte("\n"), chain...), "\n\n"...), n: 2},
		{name: "empty", data: nil, want: "no PEM CERTIFICATE block"},
		{name: "text before the first block (openssl writes subject= lines)", data: append([]byte("subject=CN=Root\n"), ChainPEM(h.root)...), want: "text before the first PEM block at line 1 (byte 0)"},
		{name: "text between blocks", data: append(append(ChainPEM(h.root), "subject=CN=Root\n"...), ChainPEM(h.root)...), want: "trailing data after PEM block 1 at line"},
		{name: "trailing text", data: append(ChainPEM(h.root), "junk\n"...), want: "trailing data after PEM block 1 at line"},
		{name: "wrong type", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), want: `type "PRIVATE KEY"`},
		{name: "not a certificate", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}}), want: "not an X.509 certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			certs, err := ParseChainPEM(tc.data)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) || certs != nil {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil || len(certs) != tc.n {
				t.Fatalf("%d certificates, %v", len(certs), err)
			}
		})
	}
}

func FuzzParseChainPEM(f *testing.F) {
	h := newHierarchy(f, elliptic.P256())
	f.Add(ChainPEM(h.issuing, h.root))
	f.Add(ChainPEM(h.root)[:100])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseChainPEM(data)
		if err != nil {
			if certs != nil || !tacerr.Is(err, tacerr.InvalidInput) {
				t.Fatalf("refusal %v with %d certificates", err, len(certs))
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("accepted with no certificate")
		}
		again, err := ParseChainPEM(ChainPEM(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-encoded chain does not parse: %v", err)
		}
	})
}

// lockedSigner is an HSM key whose token's PIN got locked: Sign fails with
// the HSM's own code (a narrow fake: SoftHSM2 never locks a PIN).
type lockedSigner struct{ crypto.Signer }

func (lockedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, tacerr.New(tacerr.HSMPINLocked, "the user PIN is locked")
}

// TestHSMErrorCodeKept: a signature the HSM refuses keeps the HSM's code,
// so a locked PIN (an operator must act) is not reported as the retryable
// hsm_device_error.
func TestHSMErrorCodeKept(t *testing.T) {
	t.Parallel()
	h := newHierarchy(t, elliptic.P256())
	locked := lockedSigner{h.rootKey}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"root", func() error {
			_, err := SelfSignedRoot(locked, pkix.Name{CommonName: "Root"}, ValidFor(now, time.Hour))
			return err
		}},
		{"issuing CA", func() error {
			_, err := IssuingCA(h.root, locked, key(t, elliptic.P256()).Public(), pkix.Name{CommonName: "Issuing"}, ValidFor(now, time.Hour))
			return err
		}},
		{"station certificate", func() error {
			_, _, err := StationCert(h.station, lockedSigner{h.stationKey}, nil, Station{ID: "st-1"}, ValidFor(now, time.Hour))
			return err
		}},
		{"CSR", func() error {
			_, err := CSRForKey(locked, pkix.Name{CommonName: "Issuing 2"})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if e, ok := tacerr.As(err); !ok || e.Code != tacerr.HSMPINLocked || e.Retryable() {
				t.Fatalf("%v, want hsm_pin_locked (not retryable)", err)
			}
		})
	}
}
