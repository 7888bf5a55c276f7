package revocation_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/revocation"
	"github.com/tacline/tacline/verify/verifytest"
)

// ocspEnv is a publisher with HSM responder keys, two provisioned devices
// (one revoked) and their files for openssl.
type ocspEnv struct {
	env                            *provtest.Env
	p                              *revocation.Publisher
	good, revoked                  *verifytest.Device
	dir, root, issuing, gpem, rpem string
}

func newOCSPEnv(t *testing.T, d store.Dialect) *ocspEnv {
	t.Helper()
	env := provtest.New(t, d)
	p := publisher(t, env)
	p.UseResponderKeys(castore.Keys{Token: env.Token})
	e := &ocspEnv{env: env, p: p, good: verifytest.Provision(t, env, "OCSP-G"), revoked: verifytest.Provision(t, env, "OCSP-R"), dir: t.TempDir()}
	if err := env.Service.Revoke(context.Background(), provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "OCSP-R", Reason: "superseded"}); err != nil {
		t.Fatal(err)
	}
	write := func(name string, c *x509.Certificate) string {
		f := filepath.Join(e.dir, name)
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	e.root, e.issuing = write("root.pem", env.Root), write("issuing.pem", env.Issuing)
	e.gpem, e.rpem = write("good.pem", e.good.Issued.Certificate), write("revoked.pem", e.revoked.Issued.Certificate)
	return e
}

func runOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// respond answers the request file req and writes the response next to it.
func (e *ocspEnv) respond(t *testing.T, req string) (string, revocation.OCSPAnswer) {
	t.Helper()
	der, err := os.ReadFile(req)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := e.p.RespondOCSP(context.Background(), der)
	if err != nil {
		t.Fatal(err)
	}
	out := req + ".resp"
	if err := os.WriteFile(out, ans.DER, 0o644); err != nil {
		t.Fatal(err)
	}
	return out, ans
}

// TestOCSPOpenSSL: openssl ocsp requests with two entries, with and
// without a nonce, and signed, are answered with one SingleResponse per
// entry (good and revoked), the nonce echoed, producedAt to the second,
// signed by a delegated responder certificate (never by the issuing CA)
// that openssl verifies against the issuer and root.
func TestOCSPOpenSSL(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		e := newOCSPEnv(t, d)
		req := filepath.Join(e.dir, "multi.req")
		runOpenSSL(t, "ocsp", "-issuer", e.issuing, "-cert", e.gpem, "-cert", e.rpem, "-reqout", req)
		resp, ans := e.respond(t, req)
		if !ans.Nonce {
			t.Fatal("the nonce of the request is not echoed")
		}
		// -reqin (no -cert, which would make a new request with a new
		// nonce): openssl checks the echoed nonce against the request's.
		out := runOpenSSL(t, "ocsp", "-reqin", req, "-respin", resp, "-CAfile", e.root, "-verify_other", e.issuing, "-resp_text")
		for _, want := range []string{"Response verify OK", "Cert Status: good", "Cert Status: revoked", "Reason: superseded (0x4)", "OCSP Nonce"} {
			if !strings.Contains(out, want) {
				t.Fatalf("openssl ocsp output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "WARNING: no nonce") || strings.Contains(out, "Nonce Verify Error") {
			t.Fatalf("nonce not echoed:\n%s", out)
		}
		if n := strings.Count(out, "Certificate ID:"); n != 2 {
			t.Fatalf("%d SingleResponses, want 2:\n%s", n, out)
		}

		// Parsed in Go: signed by the delegated responder, not the issuer.
		r, err := ocsp.ParseResponseForCert(ans.DER, e.revoked.Issued.Certificate, e.env.Issuing)
		if err != nil {
			t.Fatal(err)
		}
		rc := r.Certificate
		if rc == nil || bytes.Equal(rc.Raw, e.env.Issuing.Raw) || rc.CheckSignatureFrom(e.env.Issuing) != nil ||
			len(rc.ExtKeyUsage) != 1 || rc.ExtKeyUsage[0] != x509.ExtKeyUsageOCSPSigning || rc.KeyUsage != x509.KeyUsageDigitalSignature || rc.IsCA {
			t.Fatalf("responder certificate %+v", rc)
		}
		nocheck := false
		for _, x := range rc.Extensions {
			nocheck = nocheck || x.Id.Equal(revocation.OIDOCSPNoCheck)
		}
		if !nocheck || rc.NotAfter.Sub(rc.NotBefore) > 8*24*time.Hour {
			t.Fatalf("responder certificate: nocheck %v, validity %s", nocheck, rc.NotAfter.Sub(rc.NotBefore))
		}
		if !r.ProducedAt.Equal(e.env.Clock.Now()) {
			t.Fatalf("producedAt %s, want the signing time %s", r.ProducedAt, e.env.Clock.Now())
		}
		// The responder's key is in the HSM and recorded in the ledger.
		recs, err := e.env.DB.Issuers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var label string
		for _, rec := range recs {
			if rec.Kind == store.IssuerOCSP && rec.KeyID == ca.KeyID(rc) {
				label = rec.Label
			}
		}
		keys, err := e.env.Token.Keys()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, k := range keys {
			found = found || k.Label == label && label != "" && !k.Extractable && k.Sensitive
		}
		if !found {
			t.Fatalf("responder key %q not in the HSM as a non-extractable key", label)
		}

		// Without a nonce, and signed by a requestor.
		key, cert := filepath.Join(e.dir, "req.key"), filepath.Join(e.dir, "req.pem")
		runOpenSSL(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=requestor", "-keyout", key, "-out", cert, "-days", "1")
		for _, tc := range []struct {
			name string
			args []string
		}{
			{"no nonce", []string{"-no_nonce"}},
			{"signed", []string{"-signer", cert, "-signkey", key}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req := filepath.Join(e.dir, strings.ReplaceAll(tc.name, " ", "-")+".req")
				runOpenSSL(t, append([]string{"ocsp", "-issuer", e.issuing, "-cert", e.gpem, "-reqout", req}, tc.args...)...)
				resp, ans := e.respond(t, req)
				if ans.Nonce == (tc.name == "no nonce") {
					t.Fatalf("nonce echoed: %v", ans.Nonce)
				}
				out := runOpenSSL(t, "ocsp", "-reqin", req, "-respin", resp, "-CAfile", e.root, "-verify_other", e.issuing, "-resp_text")
				if !strings.Contains(out, "Response verify OK") || !strings.Contains(out, "Cert Status: good") {
					t.Fatalf("openssl ocsp:\n%s", out)
				}
			})
		}
	})
}

// TestOCSPNonceLimits: RFC 8954 nonces of 1 and 32 octets are echoed;
// 0 and 33 octets are answered without a nonce.
func TestOCSPNonceLimits(t *testing.T) {
	e := newOCSPEnv(t, store.SQLite)
	for _, n := range []int{1, 16, 32, 0, 33} {
		req := filepath.Join(e.dir, "nonce.req")
		runOpenSSL(t, "ocsp", "-issuer", e.issuing, "-cert", e.gpem, "-nonce", "-reqout", req)
		der, _ := os.ReadFile(req)
		if n != 16 {
			der = withNonce(t, der, n)
		}
		ans, err := e.p.RespondOCSP(context.Background(), der)
		if err != nil {
			t.Fatalf("%d octets: %v", n, err)
		}
		want := n >= 1 && n <= 32
		if ans.Nonce != want {
			t.Fatalf("nonce of %d octets: echoed %v, want %v", n, ans.Nonce, want)
		}
		r, err := ocsp.ParseResponseForCert(ans.DER, e.good.Issued.Certificate, e.env.Issuing)
		if err != nil || r.Status != ocsp.Good {
			t.Fatalf("%d octets: %v", n, err)
		}
		if want && !bytes.Contains(ans.DER, bytes.Repeat([]byte{0xAB}, n)) && n != 16 {
			t.Fatalf("%d-octet nonce not in the response", n)
		}
	}
}

// withNonce replaces openssl's 16-octet nonce (or adds one) with n octets
// of 0xAB, re-encoding the request by hand.
func withNonce(t *testing.T, der []byte, n int) []byte {
	t.Helper()
	// openssl's nonce extension: a2 23 30 21 30 1f 06 09 <nonce OID> 04 12 04 10 <16 octets>.
	i := bytes.Index(der, []byte{0xa2, 0x23, 0x30, 0x21, 0x30, 0x1f, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02, 0x04, 0x12, 0x04, 0x10})
	if i < 0 || len(der) != i+37 {
		t.Fatalf("openssl's request has no 16-octet nonce at its end: %x", der)
	}
	body := der[:i]
	// body: 30 L1 30 L2 <tbs content>; rebuild with the new extension.
	tbs := unwrap(t, unwrap(t, body))
	nonce := append([]byte{0x04, byte(n)}, bytes.Repeat([]byte{0xAB}, n)...)
	ext := append([]byte{0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02}, wrap(0x04, nonce)...)
	tbs = append(tbs, wrap(0xa2, wrap(0x30, wrap(0x30, ext)))...)
	return wrap(0x30, wrap(0x30, tbs))
}

// unwrap returns the content of the SEQUENCE at the start of b, which
// runs to the end of b.
func unwrap(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 2 || b[0] != 0x30 {
		t.Fatalf("not a SEQUENCE: %s", hex.EncodeToString(b))
	}
	// The nonce was cut from the end: the content is the rest, whatever
	// the (now stale) length says.
	if b[1] < 0x80 {
		return b[2:]
	}
	return b[2+int(b[1]&0x7f):]
}

func wrap(tag byte, content []byte) []byte {
	n := len(content)
	switch {
	case n < 0x80:
		return append([]byte{tag, byte(n)}, content...)
	case n < 0x100:
		return append([]byte{tag, 0x81, byte(n)}, content...)
	}
	return append([]byte{tag, 0x82, byte(n >> 8), byte(n)}, content...)
}

// TestOCSPResponderRenewal: a responder is reused by a new publisher (from
// the ledger and the HSM), renewed at half-life by RenewResponders, and
// the new one signs the next responses.
func TestOCSPResponderRenewal(t *testing.T) {
	e := newOCSPEnv(t, store.SQLite)
	ctx := context.Background()
	req, err := ocsp.CreateRequest(e.good.Issued.Certificate, e.env.Issuing, nil)
	if err != nil {
		t.Fatal(err)
	}
	responderOf := func(p *revocation.Publisher) *x509.Certificate {
		t.Helper()
		ans, err := p.RespondOCSP(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ocsp.ParseResponseForCert(ans.DER, e.good.Issued.Certificate, e.env.Issuing)
		if err != nil || r.Status != ocsp.Good || r.Certificate == nil {
			t.Fatalf("response: %v", err)
		}
		return r.Certificate
	}
	first := responderOf(e.p)
	p2 := publisher(t, e.env)
	p2.UseResponderKeys(castore.Keys{Token: e.env.Token})
	if again := responderOf(p2); !bytes.Equal(again.Raw, first.Raw) {
		t.Fatal("a second publisher made a new responder instead of using the ledger's")
	}
	e.env.Clock.Add(first.NotAfter.Sub(first.NotBefore)/2 + time.Second)
	if err := e.p.RenewResponders(ctx); err != nil {
		t.Fatal(err)
	}
	second := responderOf(e.p)
	if bytes.Equal(second.Raw, first.Raw) || !second.NotAfter.After(first.NotAfter) {
		t.Fatalf("responder not renewed at half-life: %s .. %s", second.NotBefore, second.NotAfter)
	}
	if third := responderOf(p2); !bytes.Equal(third.Raw, second.Raw) {
		t.Fatal("the other publisher did not pick up the renewed responder")
	}

	// Once the first responder's certificate has expired, the next renewal
	// deletes its key from the HSM; the ledger keeps its certificate and
	// the current responder's key stays.
	labelOf := func(c *x509.Certificate) string {
		t.Helper()
		recs, err := e.env.DB.Issuers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.KeyID == ca.KeyID(c) {
				return r.Label
			}
		}
		t.Fatalf("responder %s is not in the ledger", ca.KeyID(c))
		return ""
	}
	onToken := func(label string) bool {
		t.Helper()
		keys, err := e.env.Token.Keys()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.Label == label {
				return true
			}
		}
		return false
	}
	firstLabel, secondLabel := labelOf(first), labelOf(second)
	if !onToken(firstLabel) {
		t.Fatalf("the first responder's key %s was deleted while its certificate was valid", firstLabel)
	}
	e.env.Clock.Add(first.NotAfter.Sub(e.env.Clock.Now()) + time.Minute)
	if err := e.p.RenewResponders(ctx); err != nil {
		t.Fatal(err)
	}
	fourth := responderOf(e.p)
	if onToken(firstLabel) {
		t.Fatalf("the expired responder's key %s is still on the token", firstLabel)
	}
	if !onToken(secondLabel) || !onToken(labelOf(fourth)) {
		t.Fatal("a responder key whose certificate is still valid was deleted")
	}
	if labelOf(first) != firstLabel {
		t.Fatal("the expired responder's certificate left the ledger")
	}
}

// faultyKeys hands out the HSM's responder signers wrapped so that, while
// on is set, corrupt replaces each signature: what a faulty HSM or driver,
// or a key found by a wrong id after a rotation, would return. A real HSM
// cannot be made to do that on demand.
type faultyKeys struct {
	castore.Keys
	on      *atomic.Bool
	corrupt func(s crypto.Signer, digest []byte, opts crypto.SignerOpts) ([]byte, error)
}

func (k faultyKeys) GenerateKey(label, curve string) (crypto.Signer, error) {
	s, err := k.Keys.GenerateKey(label, curve)
	return faultySigner{s, k}, err
}

func (k faultyKeys) Signer(label string) (crypto.Signer, error) {
	s, err := k.Keys.Signer(label)
	return faultySigner{s, k}, err
}

type faultySigner struct {
	crypto.Signer
	k faultyKeys
}

func (s faultySigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.k.on.Load() {
		return s.k.corrupt(s.Signer, digest, opts)
	}
	return s.Signer.Sign(r, digest, opts)
}

// TestOCSPBadSignatureNotSent: a responder key whose signature does not
// verify under the responder certificate (a flipped bit, another key's
// signature) gets no response out: RespondOCSP answers internalError
// without validity times (so no HTTP cache keeps it) and hsm_unavailable
// (retryable), and logs it; once the HSM signs right again the same
// responder answers, and no responder was made in between. Before, the
// bad response was sent as a good one.
func TestOCSPBadSignatureNotSent(t *testing.T) {
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		corrupt func(s crypto.Signer, digest []byte, opts crypto.SignerOpts) ([]byte, error)
	}{
		{name: "flipped bit", corrupt: func(s crypto.Signer, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
			sig, err := s.Sign(rand.Reader, digest, opts)
			if err == nil {
				sig[len(sig)-1] ^= 1
			}
			return sig, err
		}},
		{name: "another key", corrupt: func(_ crypto.Signer, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
			return other.Sign(rand.Reader, digest, opts)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newOCSPEnv(t, store.SQLite)
			ctx := context.Background()
			var logs bytes.Buffer
			p := newPublisher(t, e.env, slog.New(slog.NewTextHandler(&logs, nil)))
			on := &atomic.Bool{}
			on.Store(true)
			p.UseResponderKeys(faultyKeys{Keys: castore.Keys{Token: e.env.Token}, on: on, corrupt: tc.corrupt})
			req, err := ocsp.CreateRequest(e.good.Issued.Certificate, e.env.Issuing, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 { // the responder just made, then the one in memory
				ans, err := p.RespondOCSP(ctx, req)
				if e, ok := tacerr.As(err); !ok || e.Code != tacerr.HSMUnavailable || !e.Retryable() {
					t.Fatalf("request %d: %v, want hsm_unavailable (retryable)", i, err)
				}
				if !bytes.Equal(ans.DER, revocation.InternalErrorOCSP) || !ans.NextUpdate.IsZero() || !ans.ThisUpdate.IsZero() {
					t.Fatalf("request %d: answer %x (next update %s), want internalError without validity", i, ans.DER, ans.NextUpdate)
				}
			}
			if n := strings.Count(logs.String(), "OCSP request answered internalError"); n != 2 || strings.Count(logs.String(), "code=hsm_unavailable") != 2 {
				t.Fatalf("%d log lines, want 2 with the code:\n%s", n, logs.String())
			}
			on.Store(false)
			ans, err := p.RespondOCSP(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ocsp.ParseResponseForCert(ans.DER, e.good.Issued.Certificate, e.env.Issuing)
			if err != nil || r.Status != ocsp.Good {
				t.Fatalf("after the HSM recovered: %v", err)
			}
			recs, err := e.env.DB.Issuers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, rec := range recs {
				if rec.Kind == store.IssuerOCSP {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d OCSP responders in the ledger, want the one made by the first request", n)
			}
		})
	}
}

// TestOCSPInternalErrorLogged: a request answered internalError for
// another cause than the signature (here: no HSM keys for responders) is
// logged with its code; the API sends the OCSP answer and keeps the error
// to itself, so it was seen nowhere.
func TestOCSPInternalErrorLogged(t *testing.T) {
	env := provtest.New(t, store.SQLite)
	var logs bytes.Buffer
	p := newPublisher(t, env, slog.New(slog.NewTextHandler(&logs, nil)))
	dev := verifytest.Provision(t, env, "OCSP-L")
	req, err := ocsp.CreateRequest(dev.Issued.Certificate, env.Issuing, nil)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := p.RespondOCSP(context.Background(), req)
	if !tacerr.Is(err, tacerr.InvalidConfig) || !bytes.Equal(ans.DER, revocation.InternalErrorOCSP) {
		t.Fatalf("RespondOCSP without responder keys = %x, %v; want internalError, invalid_config", ans.DER, err)
	}
	if !strings.Contains(logs.String(), "OCSP request answered internalError") || !strings.Contains(logs.String(), "code=invalid_config") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
}
