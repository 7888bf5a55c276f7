package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
)

// TestTBSMatchesCreateCertificate: for every profile option, curve and
// validity encoding, buildTBS writes exactly the TBSCertificate that
// crypto/x509.CreateCertificate writes for the same template and parent.
func TestTBSMatchesCreateCertificate(t *testing.T) {
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	profiles := map[string]func(*policy.Profile){
		"default":       func(*policy.Profile) {},
		"key-agreement": func(p *policy.Profile) { p.KeyAgreement = true },
		"no-skid":       func(p *policy.Profile) { p.SubjectKeyID = false },
		"eku": func(p *policy.Profile) {
			p.ExtKeyUsage = []policy.EKU{"client_auth", "1.3.6.1.4.1.99999.1", "server_auth"}
		},
		"duration":         func(p *policy.Profile) { p.NotAfter = "87600h" },          // UTCTime notAfter
		"generalized-both": func(p *policy.Profile) { p.NotAfter = "21000101000000Z" }, // GeneralizedTime
		"common-name":      func(p *policy.Profile) { p.CommonName = "Acme Widget (rev. 2)" },
		"no-backdate":      func(p *policy.Profile) { p.Backdate = 0 },
		"cdp-aia": func(p *policy.Profile) {
			p.CRLDistributionPoint = "http://pki.example.com/crl/{issuer_key_id}.crl"
			p.OCSPURL, p.CAIssuersURL = "http://ocsp.example.com/", "https://pki.example.com/ca/{issuer_key_id}.der"
		},
		"crl-only":  func(p *policy.Profile) { p.CRLDistributionPoint = "http://pki.example.com/device.crl" },
		"ocsp-only": func(p *policy.Profile) { p.OCSPURL = "http://ocsp.example.com/" },
	}
	keys := map[string]crypto.PublicKey{
		"p256":    genKey(t, elliptic.P256()).Public(),
		"p384":    genKey(t, elliptic.P384()).Public(),
		"ed25519": edPub,
	}
	times := []time.Time{time.Now().UTC().Truncate(time.Second), time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2051, 3, 1, 0, 0, 0, 0, time.UTC)}
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		p := softPKI(t, curve)
		is := p.issuer(t, DefaultLintConfig())
		for pname, mod := range profiles {
			prof := policy.DefaultProfile()
			mod(&prof)
			prof = prof.ForIssuer(hex.EncodeToString(p.issuing.SubjectKeyId))
			for kname, pub := range keys {
				for _, when := range times {
					for _, imeis := range [][]imei.IMEI{{imei.MustParse("490154203237518")}, {imei.MustParse("490154203237518"), imei.MustParse("357805023984942"), imei.MustParse("35780502398495")}} {
						serial := bigSerial(t)
						if when.Second()%2 == 1 {
							serial = big.NewInt(0x7f) // short serial, no leading zero byte
						}
						dev := policy.Device{Serial: "SN-" + kname, Manufacturer: "Acme Devices", Model: "Widget 5G", IMEIs: imeis}
						tmpl, err := prof.Template(dev, pub, serial, when)
						if err != nil {
							t.Fatal(err)
						}
						tmpl.SignatureAlgorithm = is.sigAlg
						parent := &x509.Certificate{RawSubject: p.issuing.RawSubject, SubjectKeyId: p.issuing.SubjectKeyId, PublicKey: is.throwaway.Public()}
						want, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, is.throwaway)
						if err != nil {
							t.Fatal(err)
						}
						wc, err := x509.ParseCertificate(want)
						if err != nil {
							t.Fatal(err)
						}
						got, err := buildTBS(tmpl, pub, p.issuing.RawSubject, p.issuing.SubjectKeyId, is.sigAlg)
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(got, wc.RawTBSCertificate) {
							t.Fatalf("%s/%s/%s/%v: buildTBS differs from CreateCertificate\n got %s\nwant %s", curve.Params().Name, pname, kname, when,
								hex.EncodeToString(got), hex.EncodeToString(wc.RawTBSCertificate))
						}
					}
				}
			}
		}
	}
}

// TestTBSRefusesUnknownFields: a template field the encoder does not write
// is refused rather than silently left out.
func TestTBSRefusesUnknownFields(t *testing.T) {
	p := softPKI(t, elliptic.P256())
	req := testRequest(t)
	base, err := policy.DefaultProfile().Template(deviceOf(req), req.PublicKey, bigSerial(t), req.NotBefore)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*x509.Certificate){
		"dns":      func(c *x509.Certificate) { c.DNSNames = []string{"a.example"} },
		"ca":       func(c *x509.Certificate) { c.IsCA = true },
		"country":  func(c *x509.Certificate) { c.Subject.Country = []string{"DE"} },
		"two-o":    func(c *x509.Certificate) { c.Subject.Organization = []string{"A", "B"} },
		"policies": func(c *x509.Certificate) { c.PolicyIdentifiers = []asn1.ObjectIdentifier{{1, 2, 3}} },
		"override-aia": func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkixExt(oidExtAuthorityInfo))
		},
		"override-ku": func(c *x509.Certificate) { c.ExtraExtensions = append(c.ExtraExtensions, pkixExt(oidExtKeyUsage)) },
		"serial":      func(c *x509.Certificate) { c.SerialNumber = big.NewInt(0) },
		"eku":         func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning} },
	}
	for name, mod := range cases {
		tmpl := *base
		tmpl.ExtraExtensions = append([]pkix.Extension(nil), base.ExtraExtensions...)
		mod(&tmpl)
		if _, err := buildTBS(&tmpl, req.PublicKey, p.issuing.RawSubject, p.issuing.SubjectKeyId, x509.ECDSAWithSHA256); err == nil {
			t.Errorf("%s: buildTBS accepted a template field it does not encode", name)
		}
	}
}

func pkixExt(id asn1.ObjectIdentifier) pkix.Extension {
	return pkix.Extension{Id: id, Value: []byte{3, 1, 0}}
}

// keyWithScalar returns the P-256 key pair with private scalar d.
func keyWithScalar(t testing.TB, d *big.Int) *ecdsa.PrivateKey {
	t.Helper()
	b := make([]byte, 32)
	d.FillBytes(b)
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSmallKeyMatchesZlint: tacline's table lookup and zlint's own
// e_ecdsa_small_private_key agree on P-256 keys at and around the bound, on
// negated scalars and on random keys; a small key blocks issuance with
// lint_failed naming the lint.
func TestSmallKeyMatchesZlint(t *testing.T) {
	p := softPKI(t, elliptic.P256())
	is := p.issuer(t, DefaultLintConfig())
	if is.lint.smallKey == nil {
		t.Fatal("the default lint set does not select e_ecdsa_small_private_key")
	}
	n := elliptic.P256().Params().N
	var scalars []*big.Int
	for _, d := range []int64{1, 2, 3, 255, 12345, 65535, 65536, 65537, 1 << 20} {
		scalars = append(scalars, big.NewInt(d), new(big.Int).Sub(n, big.NewInt(d)))
	}
	for i := 0; i < 8; i++ {
		raw, err := genKey(t, elliptic.P256()).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		scalars = append(scalars, new(big.Int).SetBytes(raw))
	}
	for _, d := range scalars {
		key := keyWithScalar(t, d)
		req := testRequest(t)
		req.PublicKey = key.Public()
		_, err := is.Prepare(req)
		// zlint's verdict on the same linting certificate.
		tmpl, terr := is.profile.Template(deviceOf(req), req.PublicKey, bigSerial(t), req.NotBefore)
		if terr != nil {
			t.Fatal(terr)
		}
		tbs, terr := buildTBS(tmpl, req.PublicKey, p.issuing.RawSubject, p.issuing.SubjectKeyId, is.sigAlg)
		if terr != nil {
			t.Fatal(terr)
		}
		der, terr := assemble(tbs, is.sigAlg, []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01})
		if terr != nil {
			t.Fatal(terr)
		}
		zc := mustZcrypto(t, der)
		zr := is.lint.smallKey.Execute(zc, is.lint.cfg)
		ours := is.lint.checkSmallKey(zc)
		if zr.Status != ours.Status || zr.Details != ours.Details {
			t.Fatalf("d=%v: zlint says %v %q, tacline says %v %q", d, zr.Status, zr.Details, ours.Status, ours.Details)
		}
		small := d.Cmp(big.NewInt(1<<16)) <= 0 || new(big.Int).Sub(n, d).Cmp(big.NewInt(1<<16)) <= 0
		switch {
		case small && (err == nil || !strings.Contains(err.Error(), smallKeyLint)):
			t.Fatalf("d=%v: Prepare = %v, want lint_failed naming %s", d, err, smallKeyLint)
		case !small && err != nil:
			t.Fatalf("d=%v: Prepare refused a key with a large scalar: %v", d, err)
		}
	}
}

func mustZcrypto(t testing.TB, der []byte) *zx509.Certificate {
	t.Helper()
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
