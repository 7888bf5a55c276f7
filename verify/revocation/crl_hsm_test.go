package revocation_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/revocation"
)

// lockedSigner is an HSM key whose token's PIN got locked (a narrow fake:
// SoftHSM2 never locks a PIN).
type lockedSigner struct{ crypto.Signer }

func (lockedSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, tacerr.New(tacerr.HSMPINLocked, "the user PIN is locked")
}

// TestCRLSigningKeepsHSMCode: a CRL the HSM refuses to sign keeps the
// HSM's code: a locked PIN is hsm_pin_locked (an operator must act), not
// the retryable hsm_device_error.
func TestCRLSigningKeepsHSMCode(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	root, err := ca.SelfSignedRoot(k, pkix.Name{CommonName: "Root"}, ca.ValidFor(now, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	iss := revocation.Issuer{KeyID: ca.KeyID(root), Cert: root, Signer: lockedSigner{k}, Root: true}
	_, _, err = revocation.BuildCRL(iss, 1, now, now.Add(time.Hour), func(func(revocation.Entry) error) error { return nil })
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.HSMPINLocked || e.Retryable() {
		t.Fatalf("%v, want hsm_pin_locked (not retryable)", err)
	}
}

// TestOCSPResponderKeyNotLeft: when the responder certificate cannot be
// made (here the issuer's HSM refuses to sign), the responder key just
// made is deleted: every OCSP request, which anyone may send, made another
// key and left it on the token.
func TestOCSPResponderKeyNotLeft(t *testing.T) {
	e := newOCSPEnv(t, store.SQLite)
	signer, err := e.env.Token.Signer("issuing-1") // provtest's issuing CA key
	if err != nil {
		t.Fatal(err)
	}
	keyID := ca.KeyID(e.env.Issuing)
	p, err := revocation.NewPublisher(e.env.DB, []revocation.Issuer{{KeyID: keyID, Cert: e.env.Issuing, Signer: lockedSigner{signer}}}, revocation.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p.UseResponderKeys(castore.Keys{Token: e.env.Token})
	req, err := ocsp.CreateRequest(e.good.Issued.Certificate, e.env.Issuing, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := p.RespondOCSP(context.Background(), req); !tacerr.Is(err, tacerr.HSMPINLocked) {
			t.Fatalf("request %d: %v, want hsm_pin_locked", i, err)
		}
	}
	keys, err := e.env.Token.Keys()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasPrefix(k.Label, "ocsp-") {
			t.Fatalf("responder key %s left on the token after a failed responder", k.Label)
		}
	}
}
