package factory

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/factory/factorytest"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// test TACs (reporting body 00).
const (
	tacA = 101700
	tacB = 101800
)

var checks = []error{ErrMalformed, ErrChain, ErrSAN, ErrIMEI, ErrIMEIOutsidePool, ErrPublicKey, ErrDeviceSerial}

func rootPool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestVerifyIssued(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	other := newPKI(t) // a look-alike CA with the same names
	dev, err := NewDevice("SN-0001")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := NewDevice("SN-0001")
	if err != nil {
		t.Fatal(err)
	}
	pools := []PoolRange{{TAC: tacA, SNRStart: 0, SNREnd: 999}, {TAC: tacB, SNRStart: 500, SNREnd: 600}}
	m1, m2 := imei.MustNew(tacA, 10), imei.MustNew(tacB, 550)
	outside := imei.MustNew(tacA, 1000)
	good := pki.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{m1, m2})
	roots := rootPool(pki.Root)

	tests := []struct {
		name  string
		resp  func() *wire.ProvisionResponse
		want  error
		field string
	}{
		{name: "good", resp: func() *wire.ProvisionResponse { return factorytest.RespFor(pki, dev.Serial(), good, m1, m2) }},
		{name: "good in another order", resp: func() *wire.ProvisionResponse { return factorytest.RespFor(pki, dev.Serial(), good, m2, m1) }},
		{name: "certificate for another key", resp: func() *wire.ProvisionResponse {
			return factorytest.RespFor(pki, dev.Serial(), pki.Issue(t, dev.Serial(), stranger.Public(), []imei.IMEI{m1, m2}), m1, m2)
		}, want: ErrPublicKey, field: "certificate"},
		{name: "IMEI outside the pools", resp: func() *wire.ProvisionResponse {
			return factorytest.RespFor(pki, dev.Serial(), pki.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{outside}), outside)
		}, want: ErrIMEIOutsidePool, field: "imeis[0]"},
		{name: "IMEI in a TAC of no pool", resp: func() *wire.ProvisionResponse {
			m := imei.MustNew(tacB, 10)
			return factorytest.RespFor(pki, dev.Serial(), pki.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{m}), m)
		}, want: ErrIMEIOutsidePool, field: "imeis[0]"},
		{name: "SAN names other IMEIs", resp: func() *wire.ProvisionResponse {
			return factorytest.RespFor(pki, dev.Serial(), pki.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{imei.MustNew(tacA, 11), m2}), m1, m2)
		}, want: ErrSAN, field: "certificate"},
		{name: "SAN has an extra IMEI", resp: func() *wire.ProvisionResponse { return factorytest.RespFor(pki, dev.Serial(), good, m1) }, want: ErrSAN},
		{name: "response has an IMEI the SAN lacks", resp: func() *wire.ProvisionResponse {
			return factorytest.RespFor(pki, dev.Serial(), pki.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{m1}), m1, m2)
		}, want: ErrSAN},
		{name: "chain to another root", resp: func() *wire.ProvisionResponse {
			c := other.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{m1, m2})
			r := factorytest.RespFor(other, dev.Serial(), c, m1, m2)
			return r
		}, want: ErrChain, field: "certificate"},
		{name: "intermediate missing", resp: func() *wire.ProvisionResponse {
			r := factorytest.RespFor(pki, dev.Serial(), good, m1, m2)
			r.Chain = ""
			return r
		}, want: ErrChain},
		{name: "signed directly by the root", resp: func() *wire.ProvisionResponse {
			// A root may sign a device certificate; the chain still verifies.
			return factorytest.RespFor(pki, dev.Serial(), factorytest.IssueUnder(t, pki.Root, pki.RootKey, dev.Serial(), dev.Public(), []imei.IMEI{m1}), m1)
		}},
		{name: "certificate names another device", resp: func() *wire.ProvisionResponse {
			return factorytest.RespFor(pki, dev.Serial(), pki.Issue(t, "SN-0002", dev.Public(), []imei.IMEI{m1, m2}), m1, m2)
		}, want: ErrDeviceSerial, field: "certificate"},
		{name: "response for another device", resp: func() *wire.ProvisionResponse { return factorytest.RespFor(pki, "SN-0002", good, m1, m2) }, want: ErrDeviceSerial, field: "device_serial"},
		{name: "bad check digit", resp: func() *wire.ProvisionResponse {
			r := factorytest.RespFor(pki, dev.Serial(), good, m1, m2)
			r.IMEIs[1] = r.IMEIs[1][:14] + string('0'+(r.IMEIs[1][14]-'0'+1)%10)
			return r
		}, want: ErrIMEI, field: "imeis[1]"},
		{name: "14-digit IMEI", resp: func() *wire.ProvisionResponse {
			r := factorytest.RespFor(pki, dev.Serial(), good, m1, m2)
			r.IMEIs[0] = m1.Digits14()
			return r
		}, want: ErrIMEI, field: "imeis[0]"},
		{name: "IMEI twice", resp: func() *wire.ProvisionResponse { return factorytest.RespFor(pki, dev.Serial(), good, m1, m1) }, want: ErrIMEI, field: "imeis[1]"},
		{name: "no IMEIs", resp: func() *wire.ProvisionResponse { return factorytest.RespFor(pki, dev.Serial(), good) }, want: ErrIMEI, field: "imeis"},
		{name: "empty certificate", resp: func() *wire.ProvisionResponse {
			r := factorytest.RespFor(pki, dev.Serial(), good, m1, m2)
			r.Certificate = ""
			return r
		}, want: ErrMalformed, field: "certificate"},
		{name: "certificate field holds the chain", resp: func() *wire.ProvisionResponse {
			r := factorytest.RespFor(pki, dev.Serial(), good, m1, m2)
			r.Certificate += r.Chain
			return r
		}, want: ErrMalformed, field: "certificate"},
		{name: "garbage chain", resp: func() *wire.ProvisionResponse {
			r := factorytest.RespFor(pki, dev.Serial(), good, m1, m2)
			r.Chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
			return r
		}, want: ErrMalformed, field: "chain"},
		{name: "no response", resp: func() *wire.ProvisionResponse { return nil }, want: ErrMalformed},
	}
	cached := NewVerifier(roots) // shared: its cache sees every chain of the table
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp := tc.resp()
			err := VerifyIssued(resp, roots, dev, pools)
			// The caching Verifier agrees, twice (cold and warm cache).
			for range 2 {
				if cerr := cached.Verify(resp, dev, pools); (cerr == nil) != (err == nil) || tc.want != nil && !errors.Is(cerr, tc.want) {
					t.Errorf("Verifier.Verify = %v, VerifyIssued = %v", cerr, err)
				}
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyIssued: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, c := range checks {
				if c != tc.want && errors.Is(err, c) {
					t.Errorf("err %v also matches %v", err, c)
				}
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.VerificationFailed {
				t.Errorf("err = %v, want code verification_failed", err)
			}
			if tc.field != "" && e.Field != tc.field {
				t.Errorf("field = %q, want %q", e.Field, tc.field)
			}
		})
	}
}

// An issuing CA whose name constraints the device certificate breaks: the
// Verifier must not shortcut the path through it.
func TestVerifierNameConstraints(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(99),
		Subject:               pkix.Name{CommonName: "Constrained Issuing CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		PermittedURIDomains:   []string{"example.com"},
	}
	key := factorytest.GenKey(t, elliptic.P256())
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.Root, key.Public(), pki.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	constrained, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := NewDevice("SN-NC")
	if err != nil {
		t.Fatal(err)
	}
	m := imei.MustNew(tacA, 3)
	resp := factorytest.RespFor(pki, dev.Serial(), factorytest.IssueUnder(t, constrained, key, dev.Serial(), dev.Public(), []imei.IMEI{m}), m)
	resp.Chain = string(ca.ChainPEM(constrained, pki.Root))
	pools := []PoolRange{{TAC: tacA, SNREnd: 10}}
	v := NewVerifier(rootPool(pki.Root))
	for _, err := range []error{VerifyIssued(resp, rootPool(pki.Root), dev, pools), v.Verify(resp, dev, pools), v.Verify(resp, dev, pools)} {
		if !errors.Is(err, ErrChain) {
			t.Errorf("err = %v, want ErrChain (the URN SAN breaks the URI name constraint)", err)
		}
	}
}

func TestVerifyIssuedP384Device(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	dev, err := NewDeviceWithKey("SN-384", factorytest.GenKey(t, elliptic.P384()))
	if err != nil {
		t.Fatal(err)
	}
	m := imei.MustNew(tacA, 1)
	cert := pki.Issue(t, dev.Serial(), dev.Public(), []imei.IMEI{m})
	if err := VerifyIssued(factorytest.RespFor(pki, dev.Serial(), cert, m), rootPool(pki.Root), dev, []PoolRange{{TAC: tacA, SNREnd: 10}}); err != nil {
		t.Fatal(err)
	}
}

func TestPoolRanges(t *testing.T) {
	t.Parallel()
	list := &wire.PoolList{Pools: []wire.PoolStatus{
		{Name: "a", TAC: "00101700", SNRStart: 0, SNREnd: 999, Product: "widget"},
		{Name: "b", TAC: "00101800", SNRStart: 5, SNREnd: 6, Product: "gadget"},
	}}
	got, err := PoolRanges(list, func(p wire.PoolStatus) bool { return p.Product == "gadget" })
	if err != nil || len(got) != 1 || got[0] != (PoolRange{TAC: tacB, SNRStart: 5, SNREnd: 6}) {
		t.Fatalf("PoolRanges = %v, %v", got, err)
	}
	bad := []struct {
		name string
		p    wire.PoolStatus
		msg  string
	}{
		{"short TAC", wire.PoolStatus{Name: "x", TAC: "123", SNREnd: 1}, `"x"`},
		{"reversed range", wire.PoolStatus{Name: "y", TAC: "00101700", SNRStart: 5, SNREnd: 4}, "serial range"},
		{"SNR over 6 digits", wire.PoolStatus{Name: "z", TAC: "00101700", SNREnd: 1_000_000}, "serial range"},
	}
	for _, tc := range bad {
		if _, err := PoolRanges(&wire.PoolList{Pools: []wire.PoolStatus{tc.p}}, nil); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: err = %v, want one mentioning %s", tc.name, err, tc.msg)
		}
	}
}

func TestLoadRoots(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"chain with root", ca.ChainPEM(pki.Issuing, pki.Root), true},
		{"intermediate only", ca.ChainPEM(pki.Issuing), false},
		{"not PEM", []byte("nothing"), false},
	}
	for i, tc := range tests {
		f := dir + "/" + string(rune('a'+i)) + ".pem"
		factorytest.WriteFile(t, f, tc.data)
		pool, err := LoadRoots(f)
		if (err == nil) != tc.ok {
			t.Errorf("%s: LoadRoots err = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if tc.ok {
			// Only the root is an anchor: the issuing CA alone does not verify.
			if _, err := pki.Issuing.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
				t.Errorf("%s: issuing CA does not verify under the loaded roots: %v", tc.name, err)
			}
			if _, err := pki.Issue(t, "SN", factorytest.GenKey(t, elliptic.P256()).Public(), []imei.IMEI{imei.MustNew(tacA, 1)}).Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				t.Errorf("%s: the issuing CA became a trust anchor", tc.name)
			}
		}
	}
}

// FuzzVerifyIssued mutates the response a station receives: whatever the
// server sends, VerifyIssued never accepts an identity other than the one
// issued for the device, and the caching Verifier agrees with it.
func FuzzVerifyIssued(f *testing.F) {
	pki := newPKI(f)
	dev, err := NewDevice("SN-F")
	if err != nil {
		f.Fatal(err)
	}
	m1 := imei.MustNew(tacA, 10)
	good := pki.Issue(f, dev.Serial(), dev.Public(), []imei.IMEI{m1})
	goodResp := factorytest.RespFor(pki, dev.Serial(), good, m1)
	roots := rootPool(pki.Root)
	pools := []PoolRange{{TAC: tacA, SNREnd: 999}}
	cached := NewVerifier(roots)
	f.Add(goodResp.DeviceSerial, goodResp.IMEIs[0], "", goodResp.Certificate, goodResp.Chain)
	f.Add(goodResp.DeviceSerial, goodResp.IMEIs[0], goodResp.IMEIs[0], goodResp.Certificate, goodResp.Chain)
	f.Add("SN-F", "010170000000108", "", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "")
	f.Add("", "", "", "", "")
	f.Fuzz(func(t *testing.T, serial, i1, i2, certPEM, chain string) {
		r := &wire.ProvisionResponse{DeviceSerial: serial, IMEIs: []string{i1}, Certificate: certPEM, Chain: chain}
		if i2 != "" {
			r.IMEIs = append(r.IMEIs, i2)
		}
		err := VerifyIssued(r, roots, dev, pools)
		if verr := cached.Verify(r, dev, pools); (verr == nil) != (err == nil) {
			t.Fatalf("Verifier.Verify = %v, VerifyIssued = %v", verr, err)
		}
		if err != nil {
			if tacerr.CodeOf(err) != tacerr.VerificationFailed {
				t.Fatalf("error without verification_failed code: %v", err)
			}
			return
		}
		certs, perr := parseCerts(certPEM)
		if perr != nil || len(certs) != 1 || !certs[0].Equal(good) || serial != dev.Serial() || len(r.IMEIs) != 1 {
			t.Fatalf("accepted a response that is not the issued identity: %+v", r)
		}
		if m, err := imei.Parse(r.IMEIs[0]); err != nil || m != m1 {
			t.Fatalf("accepted IMEI %q, issued %s", r.IMEIs[0], m1)
		}
	})
}

// csrIdentity is what a real station holds: a serial and the public key of
// the device's CSR, no private key.
type csrIdentity struct {
	serial string
	pub    crypto.PublicKey
}

func (c csrIdentity) Serial() string           { return c.serial }
func (c csrIdentity) Public() crypto.PublicKey { return c.pub }

// TestVerifyIssuedFromCSR: a station that never holds the device's private
// key verifies the identity from the CSR's public key alone.
func TestVerifyIssuedFromCSR(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	dev, err := NewDevice("SN-CSR")
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := dev.CSR()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		t.Fatal("CSR is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	id := csrIdentity{serial: "SN-CSR", pub: csr.PublicKey}
	m := imei.MustNew(tacA, 2)
	cert := pki.Issue(t, id.serial, id.pub, []imei.IMEI{m})
	pools := []PoolRange{{TAC: tacA, SNREnd: 10}}
	if err := VerifyIssued(factorytest.RespFor(pki, id.serial, cert, m), rootPool(pki.Root), id, pools); err != nil {
		t.Fatal(err)
	}
	other := csrIdentity{serial: "SN-CSR", pub: factorytest.GenKey(t, elliptic.P256()).Public()}
	if err := NewVerifier(rootPool(pki.Root)).Verify(factorytest.RespFor(pki, id.serial, cert, m), other, pools); !errors.Is(err, ErrPublicKey) {
		t.Fatalf("another key: err = %v, want ErrPublicKey", err)
	}
}
