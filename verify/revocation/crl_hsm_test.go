package revocation_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"io"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
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
