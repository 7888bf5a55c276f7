package register_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/store"
)

// TestDeliveryOverMutualTLS: the worker authenticates to a register that
// requires a client certificate with register.tls (cert_file, key_file,
// ca_file); without the certificate nothing is delivered and the events
// stay pending.
func TestDeliveryOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "register client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "manufacturer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile := write("client.pem", "CERTIFICATE", leafDER), write("client-key.pem", "PRIVATE KEY", keyDER)

	s, err := sim.New(filepath.Join(dir, "sim.db"), sim.Faults{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(registertest.CheckRegisterAPI(t, s))
	clients := x509.NewCertPool()
	clients.AddCert(ca)
	ts.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients}
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	ts.StartTLS()
	t.Cleanup(func() { ts.Close(); s.Close() })
	serverCA := write("register-ca.pem", "CERTIFICATE", ts.Certificate().Raw)

	db := ledger(t, store.SQLite, 2)
	bind(t, db, 0, 1)
	ctx := context.Background()

	cfg := config(ts.URL)
	cfg.TLS = register.TLS{CAFile: serverCA}
	anon, err := register.NewWorker(db, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.DeliverOnce(ctx); err == nil {
		t.Fatal("delivered without a client certificate")
	}
	if r := status(t, db); r.Counts[register.StateAcknowledged] != 0 {
		t.Fatalf("status without a client certificate: %+v", r)
	}

	cfg.TLS = register.TLS{CAFile: serverCA, CertFile: certFile, KeyFile: keyFile}
	w, err := register.NewWorker(db, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The first worker's failed batch is under its backoff: wait it out
	// through DeliverOnce until both events are acknowledged.
	deadline := time.Now().Add(30 * time.Second)
	for status(t, db).Counts[register.StateAcknowledged] != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not delivered over mutual TLS: %+v", status(t, db))
		}
		if _, err := w.DeliverOnce(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
