package verify_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
	"github.com/tacline/tacline/verify/verifytest"
)

// fixture is one real environment: a SoftHSM2-backed provisioner on SQLite
// with three provisioned devices, one of them revoked.
type fixture struct {
	env       *provtest.Env
	a, b, rev *verifytest.Device // rev gets revoked
	trust     *verify.Trust
	issuer    revocation.Issuer
	lookAlike *verifytest.LookAlike
}

// setup builds the fixture; its resources live as long as tb.
func setup(tb testing.TB) *fixture {
	t := tb
	t.Helper()
	{
		env := provtest.New(t, store.SQLite)
		f := &fixture{env: env}
		f.a = verifytest.Provision(t, env, "VER-A")
		f.b = verifytest.Provision(t, env, "VER-B")
		f.rev = verifytest.Provision(t, env, "VER-R")
		if err := env.Service.Revoke(context.Background(), provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "VER-R", Reason: "stolen"}); err != nil {
			t.Fatal(err)
		}
		var err error
		if f.trust, err = verify.NewTrust([]*x509.Certificate{env.Root}); err != nil {
			t.Fatal(err)
		}
		signer, err := env.Token.Signer("issuing-1")
		if err != nil {
			t.Fatal(err)
		}
		f.issuer = revocation.Issuer{KeyID: ca.KeyID(env.Issuing), Cert: env.Issuing, Signer: signer}
		f.lookAlike = verifytest.NewLookAlike(t, env.Root, env.Issuing)
		return f
	}
}

// TestAuthenticity runs the checks of this file on one environment.
func TestAuthenticity(t *testing.T) {
	f := setup(t)
	t.Run("verdicts", func(t *testing.T) { testVerdicts(t, f) })
	t.Run("forged CRL", func(t *testing.T) { testForgedCRL(t, f) })
	t.Run("same-named issuers", func(t *testing.T) { testSameNamedIssuers(t, f) })
	t.Run("trust anchors", func(t *testing.T) { testTrustAnchors(t, f) })
	t.Run("never genuine", func(t *testing.T) { testNeverGenuine(t, f) })
	t.Run("malformed requests", func(t *testing.T) { testMalformed(t, f) })
	t.Run("CRL input", func(t *testing.T) { testCRLInput(t, f) })
}

// testCRLInput: a CRL is DER, or PEM and nothing else.
func testCRLInput(t *testing.T, f *fixture) {
	now := f.env.Clock.Now()
	der, _, err := revocation.BuildCRL(f.issuer, 1, now, now.Add(time.Hour), func(func(revocation.Entry) error) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	p := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
	for _, ok := range [][]byte{der, p, append([]byte("\n"), p...)} {
		if _, err := verify.ParseCRL(ok); err != nil {
			t.Fatalf("ParseCRL(%.20q): %v", ok, err)
		}
	}
	for _, tc := range []struct{ name, data, want string }{
		{"text before", "Issuer: CN=Issuing\n" + string(p), "text before the first PEM block at line 1"},
		{"text after", string(p) + "junk", "trailing data after PEM block 1 at line"},
		{"two CRLs", string(p) + string(p), "give exactly one"},
		{"other block", strings.ReplaceAll(string(p), "X509 CRL", "CERTIFICATE"), `wrong PEM block type "CERTIFICATE"`},
	} {
		_, err := verify.ParseCRL([]byte(tc.data))
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidInput || e.Field != "crl" || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: ParseCRL: %v, want invalid_input (crl) %q", tc.name, err, tc.want)
		}
	}
}

// crl signs a real CRL of the issuing CA (key in SoftHSM2) listing the
// ledger's revoked certificates.
func (f *fixture) crl(t testing.TB, this, next time.Time) *x509.RevocationList {
	t.Helper()
	return f.signCRL(t, this, next, func(fn func(revocation.Entry) error) error {
		return f.env.DB.RevokedCertificates(context.Background(), ca.KeyID(f.env.Issuing), func(s string, at time.Time, r string) error {
			return fn(revocation.Entry{SerialHex: s, At: at, Reason: lifecycle.RevokeReason(r)})
		})
	})
}

func (f *fixture) signCRL(t testing.TB, this, next time.Time, entries func(fn func(revocation.Entry) error) error) *x509.RevocationList {
	t.Helper()
	der, _, err := revocation.BuildCRL(f.issuer, 1, this, next, entries)
	if err != nil {
		t.Fatal(err)
	}
	l, err := verify.ParseCRL(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func check(t testing.TB, in verify.Input, trust *verify.Trust, rev verify.Revocation, l verify.Ledger) verify.Result {
	t.Helper()
	res, err := verify.Check(context.Background(), in, trust, rev, l)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return res
}

// testVerdicts: every verdict from real artefacts, offline (CRL) and
// online (ledger).
func testVerdicts(t *testing.T, f *fixture) {
	ledger := online.Ledger{DB: f.env.DB}
	now := f.env.Clock.Now()
	crls := verify.NewCRLSet([]*x509.RevocationList{f.crl(t, now.Add(-time.Minute), now.Add(time.Hour))})
	staleCRL := verify.NewCRLSet([]*x509.RevocationList{f.crl(t, now.Add(-2*time.Hour), now.Add(-time.Hour))})
	nonce := verifytest.Nonce(t)
	genuine := f.a.Input(t, nonce)
	genuine.At = now

	clone := genuine
	clone.Signature = verifytest.Sign(t, verifytest.NewKey(t), nonce)

	changed := genuine
	changed.IMEI = f.b.Issued.IMEIs[0] // device A claims device B's IMEI

	fake := genuine
	fake.Chain = f.lookAlike.Copy(t, f.a.Issued.Certificate, &f.a.Key.PublicKey)

	revoked := f.rev.Input(t, nonce)
	revoked.At = now

	otherTAC := genuine
	otherTAC.IMEI = verifytest.OtherIMEI(t, genuine.IMEI)
	tacTrust, err := verify.NewTrust([]*x509.Certificate{f.env.Root})
	if err != nil {
		t.Fatal(err)
	}
	tacTrust.WithTACs([]uint32{provtest.TACSingle})

	// Device A's certificate with device B presenting it and B's key: the
	// ledger binds A's IMEI to A's certificate, so B's certificate plus A's
	// IMEI is a copy.
	swapped := f.b.Input(t, nonce)
	swapped.At = now
	swapped.IMEI = f.b.Issued.IMEIs[1]

	for _, tc := range []struct {
		name   string
		in     verify.Input
		trust  *verify.Trust
		rev    verify.Revocation
		ledger verify.Ledger
		want   verify.Verdict
		reason string
	}{
		{name: "genuine offline without CRL", in: genuine, want: verify.Genuine, reason: "revocation not checked"},
		{name: "genuine offline with CRL", in: genuine, rev: crls, want: verify.Genuine, reason: "not revoked"},
		{name: "genuine online", in: genuine, ledger: ledger, want: verify.Genuine, reason: "ledger binds"},
		{name: "genuine second IMEI", in: swapped, ledger: ledger, want: verify.Genuine},
		{name: "clone offline", in: clone, rev: crls, want: verify.Cloned, reason: "copied"},
		{name: "clone online", in: clone, ledger: ledger, want: verify.Cloned},
		{name: "IMEI changed offline", in: changed, rev: crls, want: verify.Tampered, reason: "not one of the certificate's IMEIs"},
		{name: "IMEI changed online", in: changed, ledger: ledger, want: verify.Tampered},
		{name: "look-alike CA offline", in: fake, rev: crls, want: verify.Counterfeit, reason: "no chain"},
		{name: "look-alike CA online", in: fake, ledger: ledger, want: verify.Counterfeit},
		{name: "look-alike trusted by mistake, ledger knows better", in: fake, trust: mustTrust(t, f.lookAlike.Root), ledger: ledger, want: verify.Counterfeit, reason: "differs"},
		{name: "revoked offline", in: revoked, rev: crls, want: verify.Revoked, reason: "keyCompromise"},
		{name: "revoked online", in: revoked, ledger: ledger, want: verify.Revoked, reason: "stolen"},
		{name: "revoked without CRL is not genuine online", in: revoked, ledger: ledger, want: verify.Revoked},
		{name: "stale CRL", in: genuine, rev: staleCRL, want: verify.Unknown, reason: "expired"},
		{name: "TAC of no trusted manufacturer", in: otherTAC, trust: tacTrust, want: verify.Unknown, reason: "no trusted manufacturer"},
		{name: "CRL of another issuer only", in: genuine, rev: verify.NewCRLSet(nil), want: verify.Unknown, reason: "no CRL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trust := tc.trust
			if trust == nil {
				trust = f.trust
			}
			res := check(t, tc.in, trust, tc.rev, tc.ledger)
			if res.Verdict != tc.want {
				t.Fatalf("verdict %s (%v), want %s", res.Verdict, res.Reasons, tc.want)
			}
			if len(res.Reasons) == 0 && tc.want != verify.Genuine {
				t.Fatal("no reasons")
			}
			if tc.reason != "" && !slices.ContainsFunc(res.Reasons, func(s string) bool { return strings.Contains(s, tc.reason) }) {
				t.Fatalf("reasons %q do not mention %q", res.Reasons, tc.reason)
			}
			if res.IMEI != tc.in.IMEI.String() || res.CertificateSerial != verify.SerialHex(tc.in.Chain[0]) {
				t.Fatalf("result names %s / %s", res.IMEI, res.CertificateSerial)
			}
		})
	}
}

func mustTrust(t testing.TB, roots ...*x509.Certificate) *verify.Trust {
	t.Helper()
	tr, err := verify.NewTrust(roots)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// testForgedCRL: a CRL that names the issuer but is signed by the
// look-alike key is an error, not a verdict.
func testForgedCRL(t *testing.T, f *fixture) {
	now := f.env.Clock.Now()
	// The look-alike issuing CA has the same subject, so its CRL names the
	// same issuer.
	forged := f.lookAlike.CRL(t, now)
	in := f.a.Input(t, verifytest.Nonce(t))
	in.At = now
	_, err := verify.Check(context.Background(), in, f.trust, verify.NewCRLSet([]*x509.RevocationList{forged}), nil)
	if !tacerr.Is(err, tacerr.InvalidInput) || !strings.Contains(err.Error(), "forged") {
		t.Fatalf("forged CRL: %v", err)
	}
}

// testSameNamedIssuers: two trusted manufacturers whose issuing CAs have
// the same names (the look-alike, here trusted: another manufacturer's
// "Device Issuing CA"), each CRL given, as `tacline verify --crl` takes
// them. A device of either is judged by its own issuer's CRL; the other's
// CRL, which names the same issuer but is signed by another key, is not
// taken for a forgery. Before, whichever of the two CRLs came first and
// did not verify with the device's issuer made every check of the other
// manufacturer's devices an error ("forged or corrupt").
func testSameNamedIssuers(t *testing.T, f *fixture) {
	now := f.env.Clock.Now()
	trust := mustTrust(t, f.env.Root, f.lookAlike.Root)
	other := f.lookAlike.CRL(t, now) // the other manufacturer's (empty) CRL
	own := f.crl(t, now.Add(-time.Minute), now.Add(time.Hour))
	for _, order := range [][]*x509.RevocationList{{other, own}, {own, other}} {
		crls := verify.NewCRLSet(order)
		in := f.a.Input(t, verifytest.Nonce(t))
		in.At = now
		if res := check(t, in, trust, crls, nil); res.Verdict != verify.Genuine {
			t.Fatalf("device of the manufacturer: %s %v", res.Verdict, res.Reasons)
		}
		in = f.rev.Input(t, verifytest.Nonce(t))
		in.At = now
		if res := check(t, in, trust, crls, nil); res.Verdict != verify.Revoked {
			t.Fatalf("revoked device of the manufacturer: %s %v", res.Verdict, res.Reasons)
		}
		// A device of the other manufacturer, its own CRL beside ours.
		nonce := verifytest.Nonce(t)
		in = verify.Input{IMEI: f.b.Issued.IMEIs[0], Chain: f.lookAlike.Copy(t, f.b.Issued.Certificate, &f.b.Key.PublicKey),
			Nonce: nonce, Signature: verifytest.Sign(t, f.b.Key, nonce), At: now}
		if res := check(t, in, trust, crls, nil); res.Verdict != verify.Genuine {
			t.Fatalf("device of the other manufacturer: %s %v", res.Verdict, res.Reasons)
		}
	}
	// Only the other's CRL for our device: still refused as forged (no CRL
	// of that name verifies with our issuer's key).
	in := f.a.Input(t, verifytest.Nonce(t))
	in.At = now
	if _, err := verify.Check(context.Background(), in, trust, verify.NewCRLSet([]*x509.RevocationList{other}), nil); !tacerr.Is(err, tacerr.InvalidInput) || !strings.Contains(err.Error(), "forged") {
		t.Fatalf("only a same-named CRL of another key: %v", err)
	}
}

// testTrustAnchors: only self-signed certificates anchor; a trust file with
// only the issuing CA is refused, and a chain does not verify to an
// intermediate given as trust.
func testTrustAnchors(t *testing.T, f *fixture) {
	if _, err := verify.NewTrust([]*x509.Certificate{f.env.Issuing}); !tacerr.Is(err, tacerr.InvalidInput) {
		t.Fatalf("intermediate-only trust: %v", err)
	}
	tr := mustTrust(t, f.env.Issuing, f.lookAlike.Root)
	in := f.a.Input(t, verifytest.Nonce(t))
	in.Chain = in.Chain[:1] // the device certificate alone
	if res := check(t, in, tr, nil, nil); res.Verdict != verify.Counterfeit {
		t.Fatalf("chain to an intermediate given as trust: %s %v", res.Verdict, res.Reasons)
	}
	// With the real root among the anchors, the intermediate from the
	// trust file completes the chain.
	tr = mustTrust(t, f.env.Issuing, f.env.Root)
	if res := check(t, in, tr, nil, nil); res.Verdict != verify.Genuine {
		t.Fatalf("intermediate from the trust file: %s %v", res.Verdict, res.Reasons)
	}
	// The root alone is no device.
	in.Chain = []*x509.Certificate{f.env.Root}
	if res := check(t, in, tr, nil, nil); res.Verdict != verify.Counterfeit {
		t.Fatalf("root as device certificate: %s %v", res.Verdict, res.Reasons)
	}
}
