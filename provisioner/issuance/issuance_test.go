package issuance

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// issueChecked prepares and issues req with is, then runs every check an
// issued certificate must pass: TBS identity with the linting certificate,
// TBS hash, issuer signature, chain verification by crypto/x509, the
// profile's fields, and no zlint finding at warn or above in the restricted
// set. It returns the (used) token and the certificate.
func issueChecked(t *testing.T, is *Issuer, p testPKI, req Request) (*Token, *x509.Certificate) {
	t.Helper()
	tok, err := is.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	lintCert, err := tok.LintCertificate()
	if err != nil {
		t.Fatal(err)
	}
	cert, der, err := is.Issue(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.RawTBSCertificate, lintCert.RawTBSCertificate) || !bytes.Equal(cert.RawTBSCertificate, tok.TBS()) {
		t.Fatal("issued TBS differs from the linted TBS")
	}
	if !bytes.Equal(cert.Raw, der) {
		t.Fatal("returned DER differs from the parsed certificate")
	}
	if h := TBSHash(tok); h != sha256.Sum256(cert.RawTBSCertificate) {
		t.Fatal("TBSHash is not the SHA-256 of the TBS")
	}
	if err := cert.CheckSignatureFrom(p.issuing); err != nil {
		t.Fatalf("signature: %v", err)
	}
	if err := lintCert.CheckSignatureFrom(p.issuing); err == nil {
		t.Fatal("the linting certificate verifies under the issuer key")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.root)
	inter.AddCert(p.issuing)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: req.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("chain: %v", err)
	}
	if cert.Subject.SerialNumber != req.DeviceSerial || cert.Subject.CommonName != req.Model || cert.Subject.Organization[0] != req.Manufacturer {
		t.Fatalf("subject %v", cert.Subject)
	}
	if !bytes.Equal(cert.AuthorityKeyId, p.issuing.SubjectKeyId) || len(cert.SubjectKeyId) == 0 {
		t.Fatal("AKID/SKID wrong")
	}
	if len(cert.URIs) != len(req.IMEIs) || cert.URIs[0].String() != req.IMEIs[0].URN() {
		t.Fatalf("URIs %v", cert.URIs)
	}
	hmn, err := policy.ParseHardwareModuleNames(cert)
	if err != nil || len(hmn) != 1 || string(hmn[0].HWSerialNum) != req.DeviceSerial {
		t.Fatalf("HardwareModuleName %v %v", hmn, err)
	}
	zc, err := zx509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	reg, _, _ := DefaultLintConfig().compile()
	for name, r := range zlint.LintCertificateEx(zc, reg).Results {
		if r.Status >= lint.Warn {
			t.Errorf("zlint %s: %s %s", name, r.Status, r.Details)
		}
	}
	return tok, cert
}

func TestIssue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		curve  elliptic.Curve
		sigAlg x509.SignatureAlgorithm
	}{
		{name: "P-256 issuer", curve: elliptic.P256(), sigAlg: x509.ECDSAWithSHA256},
		{name: "P-384 issuer", curve: elliptic.P384(), sigAlg: x509.ECDSAWithSHA384},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := softPKI(t, tc.curve)
			is := p.issuer(t, DefaultLintConfig())
			req := testRequest(t)
			_, cert := issueChecked(t, is, p, req)
			if cert.SignatureAlgorithm != tc.sigAlg {
				t.Fatalf("signature algorithm %v, want %v", cert.SignatureAlgorithm, tc.sigAlg)
			}
			if got := cert.SerialNumber.BitLen(); got < 121 || got > 128 {
				t.Fatalf("generated serial has %d bits", got)
			}
		})
	}
}

func TestPrepareIsDeterministic(t *testing.T) {
	t.Parallel()
	is := softPKI(t, elliptic.P256()).issuer(t, DefaultLintConfig())
	req := testRequest(t)
	req.Serial = big.NewInt(0x7e57)
	a, err := is.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := is.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.TBS(), b.TBS()) || TBSHash(a) != TBSHash(b) || a.Serial().Cmp(req.Serial) != 0 {
		t.Fatal("the same request gave different TBS bytes")
	}
	req.NotBefore = req.NotBefore.Add(1e9)
	c, _ := is.Prepare(req)
	if bytes.Equal(a.TBS(), c.TBS()) {
		t.Fatal("a different issue time gave the same TBS")
	}
}

// Prepare makes no signature: every linting certificate of an issuer
// carries the one signature its throwaway key made in New, a well-formed
// ECDSA signature under the issuer's signature algorithm that verifies
// neither under the issuer nor over the certificate's TBS.
func TestLintingSignatureMadeOnce(t *testing.T) {
	t.Parallel()
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		p := softPKI(t, curve)
		is := p.issuer(t, DefaultLintConfig())
		var sigs [][]byte
		for range 2 {
			tok, err := is.Prepare(testRequest(t))
			if err != nil {
				t.Fatal(err)
			}
			lc, err := tok.LintCertificate()
			if err != nil {
				t.Fatal(err)
			}
			if lc.SignatureAlgorithm != is.sigAlg {
				t.Fatalf("%s: linting certificate signed %v, the issuer signs %v", curve.Params().Name, lc.SignatureAlgorithm, is.sigAlg)
			}
			h := is.hash.New()
			h.Write(lc.RawTBSCertificate)
			if ecdsa.VerifyASN1(&is.throwaway.PublicKey, h.Sum(nil), lc.Signature) || lc.CheckSignatureFrom(p.issuing) == nil {
				t.Fatalf("%s: the linting signature verifies", curve.Params().Name)
			}
			sigs = append(sigs, lc.Signature)
		}
		h := is.hash.New()
		h.Write([]byte("tacline linting certificate"))
		if !bytes.Equal(sigs[0], sigs[1]) || !ecdsa.VerifyASN1(&is.throwaway.PublicKey, h.Sum(nil), sigs[0]) {
			t.Fatalf("%s: linting signatures %x and %x, want New's one signature by the throwaway key", curve.Params().Name, sigs[0], sigs[1])
		}
	}
}

func TestIssueIsSingleUse(t *testing.T) {
	t.Parallel()
	p := softPKI(t, elliptic.P256())
	cs := &countingSigner{Signer: p.issuingKey}
	is, err := New(Config{IssuerCert: p.issuing, Signer: cs, Profile: policy.DefaultProfile(), Lint: DefaultLintConfig()})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := is.Prepare(testRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, _, errs[i] = is.Issue(tok) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !tacerr.Is(err, tacerr.InvalidState):
			t.Fatalf("second Issue: %v, want invalid_state", err)
		}
	}
	if ok != 1 || cs.calls.Load() != 1 {
		t.Fatalf("%d successes and %d HSM signatures for one token, want 1 and 1", ok, cs.calls.Load())
	}
	if _, _, err := is.Issue(tok); !tacerr.Is(err, tacerr.InvalidState) {
		t.Fatalf("Issue after success: %v", err)
	}
	other := softPKI(t, elliptic.P256()).issuer(t, DefaultLintConfig())
	tok2, _ := other.Prepare(testRequest(t))
	if _, _, err := is.Issue(tok2); !tacerr.Is(err, tacerr.InvalidInput) {
		t.Fatalf("Issue of a foreign token: %v", err)
	}
}

func TestIssueSignerFaults(t *testing.T) {
	t.Parallel()
	p := softPKI(t, elliptic.P256())
	hsmDown := tacerr.New(tacerr.HSMUnavailable, "token gone")
	tests := []struct {
		name string
		cs   *countingSigner
		code tacerr.Code
	}{
		{name: "typed HSM error passes through", cs: &countingSigner{Signer: p.issuingKey, fail: hsmDown}, code: tacerr.HSMUnavailable},
		{name: "untyped error becomes hsm_device_error", cs: &countingSigner{Signer: p.issuingKey, fail: errors.New("CKR_GENERAL_ERROR")}, code: tacerr.HSMDeviceError},
		{name: "signature by the wrong key is not returned", cs: &countingSigner{Signer: p.issuingKey, wrongKey: genKey(t, elliptic.P256())}, code: tacerr.HSMDeviceError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			is, err := New(Config{IssuerCert: p.issuing, Signer: tc.cs, Profile: policy.DefaultProfile()})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := is.Prepare(testRequest(t))
			if err != nil {
				t.Fatal(err)
			}
			cert, der, err := is.Issue(tok)
			if cert != nil || der != nil || tacerr.CodeOf(err) != tc.code {
				t.Fatalf("Issue = %v, %d bytes, %v; want code %s", cert, len(der), err, tc.code)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	p := softPKI(t, elliptic.P256())
	p521 := softPKI(t, elliptic.P521())
	noSKID := *p.issuing
	noSKID.SubjectKeyId = nil
	leaf := *p.issuing
	leaf.IsCA = false
	badProfile := policy.DefaultProfile()
	badProfile.NotAfter = ""
	// An issuing CA that ends before the profile's fixed notAfter (the
	// default 99991231235959Z): device certificates would outlive it.
	shortCA := shortIssuer(t, p)
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{name: "key does not match", cfg: Config{IssuerCert: p.issuing, Signer: genKey(t, elliptic.P256())}, field: "issuer.key"},
		{name: "not a CA", cfg: Config{IssuerCert: &leaf, Signer: p.issuingKey}, field: "issuer.cert"},
		{name: "no SKID", cfg: Config{IssuerCert: &noSKID, Signer: p.issuingKey}, field: "issuer.cert"},
		{name: "P-521 issuer", cfg: Config{IssuerCert: p521.issuing, Signer: p521.issuingKey}, field: "issuer.key"},
		{name: "bad profile", cfg: Config{IssuerCert: p.issuing, Signer: p.issuingKey, Profile: badProfile}, field: "profile.not_after"},
		{name: "devices outlive the issuer", cfg: Config{IssuerCert: shortCA, Signer: p.issuingKey}, field: "profile.not_after"},
		{name: "unknown lint source", cfg: Config{IssuerCert: p.issuing, Signer: p.issuingKey, Lint: LintConfig{Sources: []string{"RFC5280", "RFC9999"}}}, field: "lint.sources[1]"},
		{name: "allowed lint without reason", cfg: Config{IssuerCert: p.issuing, Signer: p.issuingKey, Lint: LintConfig{Allow: []AllowedLint{{Name: "e_sub_cert_aia_missing"}}}}, field: "lint.allow[0].reason"},
		{name: "skipped lint without reason", cfg: Config{IssuerCert: p.issuing, Signer: p.issuingKey, Lint: LintConfig{Skip: []AllowedLint{{Name: "e_sub_cert_aia_missing", Reason: " "}}}}, field: "lint.skip[0].reason"},
		{name: "allowed lint twice", cfg: Config{IssuerCert: p.issuing, Signer: p.issuingKey, Lint: LintConfig{Allow: []AllowedLint{{Name: "e_sub_cert_aia_missing", Reason: "x"}, {Name: "e_sub_cert_aia_missing", Reason: "y"}}}}, field: "lint.allow[1].name"},
		{name: "allowed lint unknown", cfg: Config{IssuerCert: p.issuing, Signer: p.issuingKey, Lint: LintConfig{Allow: []AllowedLint{{Name: "e_no_such_lint", Reason: "x"}}}}, field: "lint.allow[0].name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.cfg.Profile.HWType == "" && tc.cfg.Profile.NotAfter == "" && tc.name != "bad profile" {
				tc.cfg.Profile = policy.DefaultProfile()
			}
			is, err := New(tc.cfg)
			e, ok := tacerr.As(err)
			if is != nil || !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.field {
				t.Fatalf("New = %v, want invalid_config on %s", err, tc.field)
			}
		})
	}
}

// shortIssuer certifies p's issuing key for 15 years (ending ~2041).
func shortIssuer(t *testing.T, p testPKI) *x509.Certificate {
	t.Helper()
	now := time.Now()
	rootKey := genKey(t, elliptic.P256())
	root, err := ca.SelfSignedRoot(rootKey, pkix.Name{CommonName: "Short Root"}, ca.ValidFor(now, 20*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssuingCA(root, rootKey, p.issuingKey.Public(), pkix.Name{CommonName: "Short CA"}, ca.ValidFor(now, 15*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDurationCappedAtIssuer: a profile lifetime given as a duration that
// would run past the issuing CA ends with the CA instead.
func TestDurationCappedAtIssuer(t *testing.T) {
	t.Parallel()
	p := softPKI(t, elliptic.P256())
	short := shortIssuer(t, p)
	prof := policy.DefaultProfile()
	prof.NotAfter = "876000h" // 100 years
	is, err := New(Config{IssuerCert: short, Signer: p.issuingKey, Profile: prof, Lint: DefaultLintConfig()})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := is.Prepare(testRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := is.Issue(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.Equal(short.NotAfter) {
		t.Fatalf("notAfter %s, want the issuer's %s", c.NotAfter, short.NotAfter)
	}
}

func TestPrepareRefuses(t *testing.T) {
	t.Parallel()
	is := softPKI(t, elliptic.P256()).issuer(t, DefaultLintConfig())
	tests := []struct {
		name  string
		mod   func(r *Request)
		field string
	}{
		{name: "no public key", mod: func(r *Request) { r.PublicKey = nil }, field: "public_key"},
		{name: "no issue time", mod: func(r *Request) { r.NotBefore = time.Time{} }, field: "not_before"},
		{name: "no device serial", mod: func(r *Request) { r.DeviceSerial = "" }, field: "device_serial"},
		{name: "no IMEI", mod: func(r *Request) { r.IMEIs = nil }, field: "imeis"},
		{name: "negative serial", mod: func(r *Request) { r.Serial = big.NewInt(-1) }, field: "serial"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := testRequest(t)
			tc.mod(&req)
			tok, err := is.Prepare(req)
			e, ok := tacerr.As(err)
			if tok != nil || !ok || e.Field != tc.field {
				t.Fatalf("Prepare = %v, want an error on %s", err, tc.field)
			}
		})
	}
}

// TestLintBlocksAndAllows lints with the Apple (TLS server) source, whose
// validity lints the no-expiry profile triggers on purpose: issuance is
// blocked naming the lints, then passes once they are allowed with a reason.
func TestLintBlocksAndAllows(t *testing.T) {
	t.Parallel()
	p := softPKI(t, elliptic.P256())
	strict := LintConfig{Sources: []string{"RFC5280", "Apple"}}
	tok, err := p.issuer(t, strict).Prepare(testRequest(t))
	if tok != nil || !tacerr.Is(err, tacerr.LintFailed) ||
		!strings.Contains(err.Error(), "e_tls_server_cert_valid_time_longer_than_398_days (error") ||
		!strings.Contains(err.Error(), "w_tls_server_cert_valid_time_longer_than_397_days (warn") {
		t.Fatalf("Prepare = %v, want lint_failed naming both validity lints", err)
	}
	allowed := strict
	allowed.Allow = []AllowedLint{
		{Name: "e_tls_server_cert_valid_time_longer_than_398_days", Reason: "IDevID: no well-defined expiration (IEEE 802.1AR)"},
		{Name: "w_tls_server_cert_valid_time_longer_than_397_days", Reason: "IDevID: no well-defined expiration (IEEE 802.1AR)"},
	}
	is := p.issuer(t, allowed)
	tok, err = is.Prepare(testRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if f := tok.AllowedFindings(); len(f) != 2 || !f[0].Allowed || f[0].Name != "e_tls_server_cert_valid_time_longer_than_398_days" {
		t.Fatalf("allowed findings %+v", f)
	}
	if _, _, err := is.Issue(tok); err != nil {
		t.Fatal(err)
	}
	skipped := strict
	skipped.Skip = allowed.Allow
	tok, err = p.issuer(t, skipped).Prepare(testRequest(t))
	if err != nil || len(tok.AllowedFindings()) != 0 {
		t.Fatalf("with the lints skipped: %v, findings %+v", err, tok)
	}
}

// TestOpenSSL checks an issued certificate with the openssl binary: the
// chain verifies and the text form shows the IMEI URNs and the
// HardwareModuleName otherName.
func TestOpenSSL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required for this test (apt-get install openssl)")
	}
	p := softPKI(t, elliptic.P256())
	is := p.issuer(t, DefaultLintConfig())
	req := testRequest(t)
	tok, err := is.Prepare(req)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := is.Issue(tok)
	if err != nil {
		t.Fatal(err)
	}
	opensslCheck(t, p, cert, req)
}

func opensslCheck(t *testing.T, p testPKI, cert *x509.Certificate, req Request) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	root := write("root.pem", ca.ChainPEM(p.root))
	issuing := write("issuing.pem", ca.ChainPEM(p.issuing))
	dev := write("dev.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	out, err := exec.Command("openssl", "verify", "-CAfile", root, "-untrusted", issuing, dev).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dev.pem: OK") {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
	text, err := exec.Command("openssl", "x509", "-noout", "-text", "-in", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, text)
	}
	for _, want := range []string{
		"URI:" + req.IMEIs[0].URN(), "URI:" + req.IMEIs[1].URN(),
		"othername: 1.3.6.1.5.5.7.8.4", // HardwareModuleName
		"X509v3 Key Usage: critical", "Digital Signature",
		"X509v3 Basic Constraints: critical", "CA:FALSE",
		"Not After : Dec 31 23:59:59 9999 GMT",
		"serialNumber = " + req.DeviceSerial,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("openssl x509 -text lacks %q:\n%s", want, text)
		}
	}
	// openssl shows the extension's DER in hex: the otherName type-id
	// (06 08 2B06010505070804) and the hwSerialNum OCTET STRING holding the
	// device serial must be in it.
	asn, err := exec.Command("openssl", "asn1parse", "-in", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl asn1parse: %v\n%s", err, asn)
	}
	hwSerial := "04" + hexString(string(rune(len(req.DeviceSerial)))) + hexString(req.DeviceSerial)
	for _, want := range []string{"06082B06010505070804", hwSerial} {
		if !strings.Contains(string(asn), want) {
			t.Errorf("asn1parse lacks %s:\n%s", want, asn)
		}
	}
}

func hexString(s string) string {
	const digits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(digits[s[i]>>4])
		b.WriteByte(digits[s[i]&15])
	}
	return b.String()
}

func TestIssueDeviceKeyTypes(t *testing.T) {
	t.Parallel()
	p := softPKI(t, elliptic.P256())
	is := p.issuer(t, DefaultLintConfig())
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pub  crypto.PublicKey
	}{
		{name: "P-384 device key", pub: genKey(t, elliptic.P384()).Public()},
		{name: "Ed25519 device key", pub: edKey.Public()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := testRequest(t)
			req.PublicKey = tc.pub
			_, cert := issueChecked(t, is, p, req)
			if !tc.pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
				t.Fatal("certified key differs from the request's")
			}
		})
	}
}

// TestFullRegistryFindsOnlyExcludedSources backs the choice of sources in
// docs/issuance.md: over every zlint source, all findings at warn or above on
// a default device certificate come from sources tacline does not run (Web
// PKI TLS rules), none from the ones it runs.
func TestFullRegistryFindsOnlyExcludedSources(t *testing.T) {
	t.Parallel()
	is := softPKI(t, elliptic.P256()).issuer(t, DefaultLintConfig())
	tok, err := is.Prepare(testRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	lintCert, err := tok.LintCertificate()
	if err != nil {
		t.Fatal(err)
	}
	kept := map[lint.LintSource]bool{}
	for _, s := range DefaultLintSources {
		var src lint.LintSource
		src.FromString(s)
		kept[src] = true
	}
	zc, err := zx509.ParseCertificate(lintCert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for name, r := range zlint.LintCertificate(zc).Results {
		if r.Status < lint.Warn || name == "e_cert_issued_by_compromised_emudhra_ca" {
			continue
		}
		n++
		if src := lint.GlobalRegistry().CertificateLints().ByName(name).Source; kept[src] {
			t.Errorf("%s (source %s, a source tacline runs): %s %s", name, src, r.Status, r.Details)
		}
	}
	if n == 0 {
		t.Fatal("the full registry found nothing; the TLS lints should reject a no-expiry certificate")
	}
	t.Logf("%d findings at warn or above, all from sources not run", n)
}
