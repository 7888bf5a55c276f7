package verify_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
	"github.com/tacline/tacline/verify/verifytest"
)

// faultLedger is the real ledger with one answer changed: the narrow fault
// injector for ledger states the fixture does not hold.
type faultLedger struct {
	online.Ledger
	cert    func(*verify.LedgerCert) *verify.LedgerCert
	imei    func(*verify.LedgerIMEI) *verify.LedgerIMEI
	tacGone bool
}

func (l faultLedger) Certificate(ctx context.Context, s string) (*verify.LedgerCert, error) {
	c, err := l.Ledger.Certificate(ctx, s)
	if l.cert != nil && err == nil {
		c = l.cert(c)
	}
	return c, err
}

func (l faultLedger) IMEI(ctx context.Context, m imei.IMEI) (*verify.LedgerIMEI, error) {
	r, err := l.Ledger.IMEI(ctx, m)
	if l.imei != nil && err == nil {
		r = l.imei(r)
	}
	return r, err
}

func (l faultLedger) KnowsTAC(ctx context.Context, tac uint32) (bool, error) {
	if l.tacGone {
		return false, nil
	}
	return l.Ledger.KnowsTAC(ctx, tac)
}

// mutation is one way to spoil a genuine check.
type mutation struct {
	name   string
	in     verify.Input
	trust  *verify.Trust
	rev    verify.Revocation
	ledger verify.Ledger
}

// testNeverGenuine is the property: starting from a genuine check (offline
// with a CRL, and online), changing any one field of the input or any one
// source so that one check fails never yields genuine.
func testNeverGenuine(t *testing.T, f *fixture) {
	ctx := context.Background()
	now := f.env.Clock.Now()
	nonce := verifytest.Nonce(t)
	base := f.a.Input(t, nonce)
	base.At = now
	crls := verify.NewCRLSet([]*x509.RevocationList{f.crl(t, now.Add(-time.Minute), now.Add(time.Hour))})
	ledger := online.Ledger{DB: f.env.DB}
	for _, l := range []verify.Ledger{nil, ledger} {
		var rev verify.Revocation
		if l == nil {
			rev = crls
		}
		if res := check(t, base, f.trust, rev, l); res.Verdict != verify.Genuine {
			t.Fatalf("baseline (ledger %v): %s %v", l != nil, res.Verdict, res.Reasons)
		}
	}

	var ms []mutation
	add := func(name string, mut func(in *verify.Input)) {
		in := base
		in.Chain = slices.Clone(base.Chain)
		in.Nonce = bytes.Clone(base.Nonce)
		in.Signature = bytes.Clone(base.Signature)
		mut(&in)
		ms = append(ms, mutation{name: name, in: in})
	}
	// The IMEI: every other IMEI of the fixture, neighbours, another TAC.
	for _, m := range append(slices.Clone(f.b.Issued.IMEIs), f.rev.Issued.IMEIs...) {
		add("imei "+m.String(), func(in *verify.Input) { in.IMEI = m })
	}
	for _, d := range []uint32{1, 2, 999_999} {
		m, _ := imei.New(base.IMEI.TAC(), (base.IMEI.SNR()+d)%imei.SNRsPerTAC)
		if !slices.Contains(f.a.Issued.IMEIs, m) {
			add("imei snr+"+fmt.Sprint(d), func(in *verify.Input) { in.IMEI = m })
		}
	}
	other, _ := imei.New(provtest.TACSingle, base.IMEI.SNR())
	add("imei other TAC", func(in *verify.Input) { in.IMEI = other })
	// The chain.
	add("chain without issuing CA", func(in *verify.Input) { in.Chain = in.Chain[:1] })
	add("chain of device B", func(in *verify.Input) { in.Chain = f.b.Chain })
	add("chain reversed", func(in *verify.Input) { slices.Reverse(in.Chain) })
	add("chain from look-alike CA", func(in *verify.Input) {
		in.Chain = f.lookAlike.Copy(t, f.a.Issued.Certificate, &f.a.Key.PublicKey)
	})
	add("chain of the root alone", func(in *verify.Input) { in.Chain = []*x509.Certificate{f.env.Root} })
	raw := base.Chain[0].Raw
	for i := 0; i < len(raw); i += 3 {
		b := bytes.Clone(raw)
		b[i] ^= 1 << (i % 8)
		c, err := x509.ParseCertificate(b)
		if err != nil {
			continue // does not parse: ParseChainPEM refuses it with an error
		}
		add(fmt.Sprintf("certificate byte %d flipped", i), func(in *verify.Input) { in.Chain[0] = c })
	}
	// The nonce and the signature.
	for i := range len(nonce) * 8 {
		add(fmt.Sprintf("nonce bit %d", i), func(in *verify.Input) { in.Nonce[i/8] ^= 1 << (i % 8) })
	}
	add("nonce truncated", func(in *verify.Input) { in.Nonce = in.Nonce[:len(in.Nonce)-1] })
	for i := range len(base.Signature) {
		add(fmt.Sprintf("signature byte %d", i), func(in *verify.Input) { in.Signature[i] ^= 0x10 })
	}
	add("signature empty", func(in *verify.Input) { in.Signature = nil })
	add("signature truncated", func(in *verify.Input) { in.Signature = in.Signature[:len(in.Signature)-2] })
	add("signature by another key", func(in *verify.Input) { in.Signature = verifytest.Sign(t, verifytest.NewKey(t), nonce) })
	add("signature by device B", func(in *verify.Input) { in.Signature = verifytest.Sign(t, f.b.Key, nonce) })
	add("signature over another nonce", func(in *verify.Input) { in.Signature = verifytest.Sign(t, f.a.Key, verifytest.Nonce(t)) })

	// The sources: offline ones are judged with a CRL, ledger faults online.
	revokedA := verify.NewCRLSet([]*x509.RevocationList{f.crlWith(t, now, verify.SerialHex(base.Chain[0]))})
	ms = append(ms,
		mutation{name: "trust: look-alike root only", in: base, trust: mustTrust(t, f.lookAlike.Root)},
		mutation{name: "trust: only other TACs", in: base, trust: mustTrust(t, f.env.Root).WithTACs([]uint32{provtest.TACSingle})},
		mutation{name: "CRL lists the certificate", in: base, rev: revokedA},
		mutation{name: "CRL expired", in: base, rev: verify.NewCRLSet([]*x509.RevocationList{f.crl(t, now.Add(-3*time.Hour), now.Add(-time.Hour))})},
		mutation{name: "no CRL of the issuer", in: base, rev: verify.NewCRLSet(nil)},
		mutation{name: "forged CRL", in: base, rev: verify.NewCRLSet([]*x509.RevocationList{f.lookAlike.CRL(t, now)})},
		mutation{name: "ledger: certificate unknown", in: base, ledger: faultLedger{Ledger: ledger, cert: func(*verify.LedgerCert) *verify.LedgerCert { return nil }}},
		mutation{name: "ledger: certificate revoked", in: base, ledger: faultLedger{Ledger: ledger, cert: func(c *verify.LedgerCert) *verify.LedgerCert {
			c.Revoked, c.RevokeReason = true, "cloned"
			return c
		}}},
		mutation{name: "ledger: other DER under the serial", in: base, ledger: faultLedger{Ledger: ledger, cert: func(c *verify.LedgerCert) *verify.LedgerCert {
			c.DER = f.b.Issued.CertDER
			return c
		}}},
		mutation{name: "ledger: IMEI never allocated", in: base, ledger: faultLedger{Ledger: ledger, imei: func(*verify.LedgerIMEI) *verify.LedgerIMEI { return nil }}},
		mutation{name: "ledger: IMEI bound to another certificate", in: base, ledger: faultLedger{Ledger: ledger, imei: func(r *verify.LedgerIMEI) *verify.LedgerIMEI {
			r.CertSerial = verify.SerialHex(f.b.Issued.Certificate)
			return r
		}}},
		mutation{name: "ledger: IMEI revoked", in: base, ledger: faultLedger{Ledger: ledger, imei: func(r *verify.LedgerIMEI) *verify.LedgerIMEI { r.State = "REVOKED"; return r }}},
		mutation{name: "ledger: IMEI voided", in: base, ledger: faultLedger{Ledger: ledger, imei: func(r *verify.LedgerIMEI) *verify.LedgerIMEI { r.State = "VOIDED"; return r }}},
		mutation{name: "ledger: IMEI only reserved", in: base, ledger: faultLedger{Ledger: ledger, imei: func(r *verify.LedgerIMEI) *verify.LedgerIMEI { r.State = "RESERVED"; return r }}},
		mutation{name: "ledger: TAC not in catalogue", in: base, ledger: faultLedger{Ledger: ledger, tacGone: true}},
	)
	future := base
	future.At = now.Add(2 * time.Hour) // past the CRL's nextUpdate
	ms = append(ms, mutation{name: "checked after the CRL's nextUpdate", in: future, rev: crls})
	pastIn := base
	pastIn.At = base.Chain[0].NotBefore.Add(-time.Hour)
	ms = append(ms, mutation{name: "checked before the certificate's notBefore", in: pastIn})

	n := 0
	for _, m := range ms {
		trust := m.trust
		if trust == nil {
			trust = f.trust
		}
		// Input mutations are judged both offline (with the good CRL) and
		// online; source mutations with their own source.
		runs := []struct {
			rev verify.Revocation
			l   verify.Ledger
		}{{m.rev, m.ledger}}
		if m.rev == nil && m.ledger == nil && m.trust == nil {
			runs = []struct {
				rev verify.Revocation
				l   verify.Ledger
			}{{crls, nil}, {nil, ledger}, {nil, nil}}
		}
		for _, r := range runs {
			res, err := verify.Check(ctx, m.in, trust, r.rev, r.l)
			if err == nil && res.Verdict == verify.Genuine {
				t.Errorf("%s (ledger %v): genuine; reasons %v", m.name, r.l != nil, res.Reasons)
			}
			if err == nil && len(res.Reasons) == 0 {
				t.Errorf("%s: verdict %s without reasons", m.name, res.Verdict)
			}
			n++
		}
	}
	if n < 200 {
		t.Fatalf("only %d mutated checks ran", n)
	}
	t.Logf("%d mutated checks, none genuine", n)
}

// crlWith signs a CRL of the issuing CA listing serial (keyCompromise).
func (f *fixture) crlWith(t testing.TB, now time.Time, serial string) *x509.RevocationList {
	t.Helper()
	return f.signCRL(t, now.Add(-time.Minute), now.Add(time.Hour), func(fn func(revocation.Entry) error) error {
		return fn(revocation.Entry{SerialHex: serial, At: now.Add(-time.Minute), Reason: "cloned"})
	})
}

// testMalformed: malformed requests are errors naming the field, never a
// verdict.
func testMalformed(t *testing.T, f *fixture) {
	good := verifytest.Request(f.a.Input(t, verifytest.Nonce(t)))
	for _, tc := range []struct {
		name  string
		mut   func(r *verify.Request)
		field string
		code  tacerr.Code
	}{
		{name: "IMEI empty", mut: func(r *verify.Request) { r.IMEI = "" }, field: "imei", code: tacerr.InvalidIMEI},
		{name: "IMEI bad check digit", mut: func(r *verify.Request) { r.IMEI = r.IMEI[:14] + fmt.Sprint((r.IMEI[14]-'0'+1)%10) }, field: "imei", code: tacerr.InvalidIMEI},
		{name: "IMEI letters", mut: func(r *verify.Request) { r.IMEI = "35abcdefghijklm" }, field: "imei", code: tacerr.InvalidIMEI},
		{name: "IMEI too long", mut: func(r *verify.Request) { r.IMEI += "00" }, field: "imei", code: tacerr.InvalidIMEI},
		{name: "chain empty", mut: func(r *verify.Request) { r.Chain = "" }, field: "chain", code: tacerr.InvalidInput},
		{name: "chain not PEM", mut: func(r *verify.Request) { r.Chain = "hello" }, field: "chain", code: tacerr.InvalidInput},
		{name: "chain key block", mut: func(r *verify.Request) { r.Chain = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n" }, field: "chain", code: tacerr.InvalidInput},
		{name: "chain bad DER", mut: func(r *verify.Request) { r.Chain = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n" }, field: "chain", code: tacerr.InvalidInput},
		{name: "chain trailing garbage", mut: func(r *verify.Request) { r.Chain += "garbage" }, field: "chain", code: tacerr.InvalidInput},
		{name: "chain leading text", mut: func(r *verify.Request) { r.Chain = "subject=CN=device\n" + r.Chain }, field: "chain", code: tacerr.InvalidInput},
		{name: "chain text between certificates", mut: func(r *verify.Request) {
			r.Chain = string(ca.ChainPEM(f.a.Chain[0])) + "issuer=CN=Issuing\n" + string(ca.ChainPEM(f.a.Chain[1:]...))
		}, field: "chain", code: tacerr.InvalidInput},
		{name: "chain too many", mut: func(r *verify.Request) { r.Chain = string(bytes.Repeat(ca.ChainPEM(f.a.Chain[0]), 9)) }, field: "chain", code: tacerr.InvalidInput},
		{name: "nonce empty", mut: func(r *verify.Request) { r.Nonce = "" }, field: "nonce", code: tacerr.InvalidInput},
		{name: "nonce not hex", mut: func(r *verify.Request) { r.Nonce = "zz" + r.Nonce[2:] }, field: "nonce", code: tacerr.InvalidInput},
		{name: "nonce short", mut: func(r *verify.Request) { r.Nonce = "abcd" }, field: "nonce", code: tacerr.InvalidInput},
		{name: "nonce long", mut: func(r *verify.Request) { r.Nonce = string(bytes.Repeat([]byte("ab"), 65)) }, field: "nonce", code: tacerr.InvalidInput},
		{name: "signature empty", mut: func(r *verify.Request) { r.Signature = "" }, field: "signature", code: tacerr.InvalidInput},
		{name: "signature not base64", mut: func(r *verify.Request) { r.Signature = "!!" + r.Signature }, field: "signature", code: tacerr.InvalidInput},
		{name: "signature huge", mut: func(r *verify.Request) { r.Signature = base64.StdEncoding.EncodeToString(make([]byte, 300)) }, field: "signature", code: tacerr.InvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := good
			tc.mut(&r)
			_, err := r.Parse()
			e, ok := tacerr.As(err)
			if !ok || e.Code != tc.code || e.Field != tc.field || e.Message == "" {
				t.Fatalf("error %v, want code %s field %s", err, tc.code, tc.field)
			}
		})
	}
	if _, err := good.Parse(); err != nil {
		t.Fatalf("the unmutated request: %v", err)
	}
}

// FuzzVerifyRequest: whatever the request, Parse returns an error naming a
// field or an input, and Check on that input says genuine only for the
// device's own certificate, one of its IMEIs and the nonce it signed.
func FuzzVerifyRequest(f *testing.F) {
	fx := setup(f)
	nonce := verifytest.Nonce(f)
	in := fx.a.Input(f, nonce)
	good := verifytest.Request(in)
	f.Add(good.IMEI, good.Chain, good.Nonce, good.Signature)
	f.Add(fx.b.Issued.IMEIs[0].String(), good.Chain, good.Nonce, good.Signature)
	f.Add(good.IMEI, string(ca.ChainPEM(fx.b.Chain...)), good.Nonce, good.Signature)
	f.Add(good.IMEI, good.Chain[:len(good.Chain)/2], good.Nonce, good.Signature)
	f.Add(good.IMEI, good.Chain, good.Nonce[:10], good.Signature)
	f.Add("", "", "", "")
	f.Add("35-209900-176148-1", "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----", "00", "AA==")
	fields := []string{"imei", "chain", "nonce", "signature"}
	f.Fuzz(func(t *testing.T, m, chain, n, sig string) {
		req := verify.Request{IMEI: m, Chain: chain, Nonce: n, Signature: sig}
		parsed, err := req.Parse()
		if err != nil {
			e, ok := tacerr.As(err)
			if !ok || !slices.Contains(fields, e.Field) {
				t.Fatalf("error without a field: %v", err)
			}
			return
		}
		parsed.At = fx.env.Clock.Now()
		res, err := verify.Check(context.Background(), parsed, fx.trust, nil, nil)
		if err != nil {
			return
		}
		if res.Verdict == verify.Genuine {
			if !bytes.Equal(parsed.Chain[0].Raw, fx.a.Issued.CertDER) || !slices.Contains(fx.a.Issued.IMEIs, parsed.IMEI) || !bytes.Equal(parsed.Nonce, nonce) {
				t.Fatalf("genuine for imei %s, certificate %s, nonce %x", parsed.IMEI, res.CertificateSerial, parsed.Nonce)
			}
		}
	})
}
