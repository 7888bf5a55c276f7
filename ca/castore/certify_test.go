package castore_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

type eventSink struct{ types []string }

func (s *eventSink) Append(_ *store.Tx, evs []store.Event) error {
	for _, e := range evs {
		s.types = append(s.types, e.Type)
	}
	return nil
}

// TestCertifySiteCA: a site's issuing CA key, made in the site's own
// token with a CSR, is certified by HQ's device root in HQ's token (one
// ca.certified event at HQ); the site imports and activates it, and
// openssl accepts it under HQ's root with -x509_strict. A CSR that is not
// one, signed by another key, or for an RSA key is refused.
func TestCertifySiteCA(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	hqTok := hsmtest.Open(t, hsmtest.NewToken(t))
	hqDB := storetest.Open(t, store.SQLite)
	sink := &eventSink{}
	hqDB.AddSink(sink)
	dev, err := castore.InitDev(ctx, hqDB, hqTok, "Acme Devices", "P-256", "test", now, ca.NoExpiry)
	if err != nil {
		t.Fatal(err)
	}
	siteTok := hsmtest.Open(t, hsmtest.NewToken(t))
	siteDB := storetest.Open(t, store.SQLite)
	if _, err := castore.InitInfra(ctx, siteDB, siteTok, "Acme Devices", "P-256", "test", now); err != nil {
		t.Fatal(err)
	}
	csr, err := ca.InitOffline(ctx, castore.Issuers{DB: siteDB, Kind: store.IssuerDevice, Actor: "test"}, castore.Keys{Token: siteTok}, ca.CeremonyOptions{IssuerLabel: "site-1-ca", Organization: "Acme Devices", Now: now})
	if err != nil {
		t.Fatal(err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	tampered := pemCSR(t, csr)
	tampered[len(tampered)-5] ^= 1 // the signature's last byte
	before := len(sink.types)
	for name, bad := range map[string][]byte{
		"not a CSR":  ca.ChainPEM(dev.Root),
		"tampered":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}),
		"an RSA key": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: rsaCSR}),
	} {
		if _, _, err := castore.CertifySiteCA(ctx, hqDB, hqTok, bad, now, ca.NoExpiry, "test"); !tacerr.Is(err, tacerr.InvalidInput) {
			t.Errorf("%s: %v, want invalid_input", name, err)
		}
	}
	if len(sink.types) != before {
		t.Fatalf("a refused certification emitted events: %v", sink.types)
	}

	cert, root, err := castore.CertifySiteCA(ctx, hqDB, hqTok, csr, now, ca.NoExpiry, "test")
	if err != nil {
		t.Fatal(err)
	}
	if ca.KeyID(root) != ca.KeyID(dev.Root) || !cert.IsCA || cert.MaxPathLen != 0 || !cert.NotAfter.Equal(ca.NoExpiry) ||
		cert.Subject.CommonName != "Acme Devices Device Issuing CA site-1-ca" {
		t.Fatalf("certified %+v by %s", cert.Subject, root.Subject)
	}
	if got := sink.types[len(sink.types)-1]; got != store.EventCACertified {
		t.Fatalf("last HQ event %q, want %s", got, store.EventCACertified)
	}
	signer, err := siteTok.Signer("site-1-ca")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ca.Import(ctx, castore.Issuers{DB: siteDB, Kind: store.IssuerDevice, Actor: "test"}, "site-1-ca", signer,
		append(castore.PEM(cert), castore.PEM(root)...), nil, true, now, ca.NoExpiry)
	if err != nil || !rec.Active {
		t.Fatalf("import at the site: %+v, %v", rec, err)
	}
	dir := t.TempDir()
	rootFile, certFile := filepath.Join(dir, "root.pem"), filepath.Join(dir, "site-ca.pem")
	if err := os.WriteFile(rootFile, castore.PEM(root), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, castore.PEM(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "verify", "-x509_strict", "-CAfile", rootFile, certFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl verify: %v\n%s", err, out)
	}
}

func pemCSR(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM")
	}
	return append([]byte(nil), b.Bytes...)
}
