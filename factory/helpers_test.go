package factory

import (
	"context"
	"crypto"
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
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
)

// testPKI is a device root with an issuing CA, a station CA with one
// station certificate, and a server certificate, written as the files a
// station uses.
type testPKI struct {
	root, issuing       *x509.Certificate
	rootKey, issuingKey crypto.Signer
	stationCA           *x509.Certificate
	stationCAKey        crypto.Signer
	serverCert          tls.Certificate
	serverCAFile        string // verifies the server
	rootsFile           string // ca-chain.pem: issuing + root
	certFile, keyFile   string // the station's client credentials
	dir                 string
}

func genKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func keyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{rootKey: genKey(t, elliptic.P256()), issuingKey: genKey(t, elliptic.P256()), stationCAKey: genKey(t, elliptic.P256()), dir: t.TempDir()}
	var err error
	if p.root, err = ca.SelfSignedRoot(p.rootKey, pkix.Name{CommonName: "Test Device Root", Organization: []string{"Test Devices"}}, ca.ValidFor(now, 72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.issuing, err = ca.IssuingCA(p.root, p.rootKey, p.issuingKey.Public(), pkix.Name{CommonName: "Test Issuing CA", Organization: []string{"Test Devices"}}, ca.ValidFor(now, 24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.stationCA, err = ca.StationCA(p.root, p.rootKey, p.stationCAKey.Public(), pkix.Name{CommonName: "Test Station CA"}, ca.ValidFor(now, 48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	p.certFile, p.keyFile = p.station(t, "F1-L1-S01", filepath.Join(p.dir, "F1-L1-S01"))
	// The server certificate: serverAuth for 127.0.0.1, signed by the root.
	sk := genKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "tacline test server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, sk.Public(), p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: sk}
	p.serverCAFile = filepath.Join(p.dir, CredsServerCAFile)
	writeFile(t, p.serverCAFile, ca.ChainPEM(p.root))
	p.rootsFile = filepath.Join(p.dir, CredsRootsFile)
	writeFile(t, p.rootsFile, ca.ChainPEM(p.issuing, p.root))
	return p
}

// station makes a station certificate and key under dir.
func (p *testPKI) station(t testing.TB, id, dir string) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := ca.StationCert(p.stationCA, p.stationCAKey, nil, ca.Station{ID: id, Factory: "F1", Line: "L1"}, ca.ValidFor(time.Now(), 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, CredsCertFile), filepath.Join(dir, CredsKeyFile)
	writeFile(t, certFile, ca.ChainPEM(cert, p.stationCA))
	writeFile(t, keyFile, keyPEM(t, key))
	return certFile, keyFile
}

// serve starts a real TLS server that requires a station certificate.
func (p *testPKI) serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(p.stationCA)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected in tests
	srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// client returns a Client of the station for srv, with sleeps recorded
// instead of waited.
func (p *testPKI) client(t testing.TB, srv *httptest.Server, cfg ClientConfig) (*Client, *[]time.Duration) {
	t.Helper()
	cfg.ServerURL = srv.URL
	if cfg.CertFile == "" {
		cfg.CertFile, cfg.KeyFile = p.certFile, p.keyFile
	}
	if cfg.CAFile == "" {
		cfg.CAFile = p.serverCAFile
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var waits []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return c, &waits
}

// issue signs a device certificate under the issuing CA with the real
// device profile (policy.Profile.Template).
func (p *testPKI) issue(t testing.TB, serial string, pub crypto.PublicKey, ims []imei.IMEI) *x509.Certificate {
	t.Helper()
	return issueUnder(t, p.issuing, p.issuingKey, serial, pub, ims)
}

func issueUnder(t testing.TB, parent *x509.Certificate, parentKey crypto.Signer, serial string, pub crypto.PublicKey, ims []imei.IMEI) *x509.Certificate {
	t.Helper()
	sn, err := policy.NewSerial(nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := policy.DefaultProfile().Template(policy.Device{Serial: serial, Manufacturer: "Test Devices", Model: "Widget", IMEIs: ims}, pub, sn, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustIMEI(t testing.TB, tac, snr uint32) imei.IMEI {
	t.Helper()
	m, err := imei.New(tac, snr)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
