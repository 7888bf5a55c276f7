// Package verifytest gives authenticity tests real artefacts: devices
// provisioned by the real provisioner (SoftHSM2-signed certificates in a
// real ledger, through provtest), challenge answers signed with the
// device's key or a clone's, and a look-alike CA whose certificates carry
// the same subject names as the manufacturer's but another key.
package verifytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/verify"
)

// Device is a provisioned device and its key.
type Device struct {
	Serial string
	Key    *ecdsa.PrivateKey
	Issued *provisioner.Issued
	Chain  []*x509.Certificate // device certificate, issuing CA, root
}

// Provision provisions a device with a fresh key through the real
// provisioner (station S1, product EX-1: two IMEIs per device).
func Provision(t testing.TB, env *provtest.Env, serial string) *Device {
	t.Helper()
	dev := provtest.NewDevice(t)
	iss, err := env.Service.Provision(context.Background(), provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: "req-" + serial,
		DeviceSerial: serial, Product: "EX-1", CSR: dev.CSR})
	if err != nil {
		t.Fatalf("provision %s: %v", serial, err)
	}
	rest, err := verify.ParseChainPEM([]byte(iss.ChainPEM))
	if err != nil {
		t.Fatalf("chain of %s: %v", serial, err)
	}
	return &Device{Serial: serial, Key: dev.Key, Issued: iss, Chain: append([]*x509.Certificate{iss.Certificate}, rest...)}
}

// Nonce returns 32 random bytes.
func Nonce(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// Sign signs nonce with key as a device does.
func Sign(t testing.TB, key *ecdsa.PrivateKey, nonce []byte) []byte {
	t.Helper()
	sig, err := factory.SignChallenge(key, nonce)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// NewKey makes a P-256 key (a clone's key).
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Input is the device's genuine answer to nonce.
func (d *Device) Input(t testing.TB, nonce []byte) verify.Input {
	return verify.Input{IMEI: d.Issued.IMEIs[0], Chain: d.Chain, Nonce: nonce, Signature: Sign(t, d.Key, nonce)}
}

// Request is the wire form of in.
func Request(in verify.Input) verify.Request {
	return verify.Request{IMEI: in.IMEI.String(), Chain: string(ca.ChainPEM(in.Chain...)), Nonce: hex.EncodeToString(in.Nonce),
		Signature: base64.StdEncoding.EncodeToString(in.Signature)}
}

// LookAlike is a CA with the manufacturer's subject names and its own keys.
type LookAlike struct {
	Root, Issuing *x509.Certificate
	rootKey, key  *ecdsa.PrivateKey
}

// NewLookAlike copies the subject names of root and issuing into a CA of
// fresh keys.
func NewLookAlike(t testing.TB, root, issuing *x509.Certificate) *LookAlike {
	t.Helper()
	la := &LookAlike{rootKey: NewKey(t), key: NewKey(t)}
	now := time.Now()
	var err error
	if la.Root, err = ca.SelfSignedRoot(la.rootKey, root.Subject, ca.ValidFor(now.Add(-time.Hour), 10*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if la.Issuing, err = ca.IssuingCA(la.Root, la.rootKey, la.key.Public(), issuing.Subject, ca.ValidFor(now.Add(-time.Hour), 5*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if la.Root.Subject.String() != root.Subject.String() || la.Issuing.Subject.String() != issuing.Subject.String() {
		t.Fatalf("look-alike names differ: %s / %s", la.Root.Subject, la.Issuing.Subject)
	}
	return la
}

// Copy issues a certificate like tmpl (same subject, serial, IMEIs) for pub
// from the look-alike issuing CA, and returns the chain device, issuing,
// root.
func (la *LookAlike) Copy(t testing.TB, tmpl *x509.Certificate, pub any) []*x509.Certificate {
	t.Helper()
	c := *tmpl
	c.ExtraExtensions = nil
	der, err := x509.CreateCertificate(rand.Reader, &c, la.Issuing, pub, la.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return []*x509.Certificate{cert, la.Issuing, la.Root}
}

// OtherIMEI returns an IMEI of the same TAC that is not m.
func OtherIMEI(t testing.TB, m imei.IMEI) imei.IMEI {
	t.Helper()
	o, err := imei.New(m.TAC(), (m.SNR()+777)%imei.SNRsPerTAC)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// CRL signs an empty CRL as the look-alike issuing CA: it names the
// manufacturer's issuing CA but is signed with another key.
func (la *LookAlike) CRL(t testing.TB, now time.Time) *x509.RevocationList {
	t.Helper()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, la.Issuing, la.key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
