// Package factorytest gives the station client's tests and the line
// simulator's tests one small PKI: a device root with an issuing CA, a
// station CA with a station certificate, a server certificate for
// 127.0.0.1, the files a station reads, and a real mutual-TLS test server
// that holds every answer of the stand-in handler to the station API's
// contract (api/openapi.yaml), as the real server's tests are held.
// It imports nothing of package factory, so factory's own tests can use it.
package factorytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/openapitest"
	"github.com/tacline/tacline/policy"
)

// Files names the files of a station credentials directory (package
// factory's Creds*File constants).
type Files struct {
	ServerCA, Roots, Cert, Key, Product string
}

// Station is one station's credentials as Stations writes them.
type Station struct {
	ID, CertFile, KeyFile, Product string
}

// Stations makes n station credentials directories under p.Dir
// (F1-L1-S01...), each with a certificate, a key and a product file.
func (p *PKI) Stations(t testing.TB, n int, product string) []Station {
	t.Helper()
	var out []Station
	for i := range n {
		id := fmt.Sprintf("F1-L1-S%02d", i+1)
		dir := filepath.Join(p.Dir, id)
		cf, kf := p.Station(t, id, dir)
		WriteFile(t, filepath.Join(dir, p.files.Product), []byte(product+"\n"))
		out = append(out, Station{ID: id, CertFile: cf, KeyFile: kf, Product: product})
	}
	return out
}

// PKI is a device root with an issuing CA, a station CA with one
// station certificate, and a server certificate, written as the files a
// station uses.
type PKI struct {
	Root, Issuing       *x509.Certificate
	RootKey, IssuingKey crypto.Signer
	StationCA           *x509.Certificate
	StationCAKey        crypto.Signer
	ServerCert          tls.Certificate
	ServerCAFile        string // verifies the server
	RootsFile           string // ca-chain.pem: issuing + root
	CertFile, KeyFile   string // the station's client credentials
	Dir                 string
	files               Files
}

// GenKey makes an ECDSA key on curve c.
func GenKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// WriteFile writes data to path (mode 0600), making its directory.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// KeyPEM encodes k as PKCS#8 PEM.
func KeyPEM(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// NewPKI makes the PKI in a temporary directory, its files named by files.
func NewPKI(t testing.TB, files Files) *PKI {
	t.Helper()
	now := time.Now()
	p := &PKI{RootKey: GenKey(t, elliptic.P256()), IssuingKey: GenKey(t, elliptic.P256()), StationCAKey: GenKey(t, elliptic.P256()), Dir: t.TempDir(), files: files}
	var err error
	if p.Root, err = ca.SelfSignedRoot(p.RootKey, pkix.Name{CommonName: "Test Device Root", Organization: []string{"Test Devices"}}, ca.ValidFor(now, 72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.Issuing, err = ca.IssuingCA(p.Root, p.RootKey, p.IssuingKey.Public(), pkix.Name{CommonName: "Test Issuing CA", Organization: []string{"Test Devices"}}, ca.ValidFor(now, 24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.StationCA, err = ca.StationCA(p.Root, p.RootKey, p.StationCAKey.Public(), pkix.Name{CommonName: "Test Station CA"}, ca.ValidFor(now, 48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	p.CertFile, p.KeyFile = p.Station(t, "F1-L1-S01", filepath.Join(p.Dir, "F1-L1-S01"))
	// The server certificate: serverAuth for 127.0.0.1, signed by the root.
	sk := GenKey(t, elliptic.P256())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "tacline test server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Root, sk.Public(), p.RootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.ServerCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: sk}
	p.ServerCAFile = filepath.Join(p.Dir, files.ServerCA)
	WriteFile(t, p.ServerCAFile, ca.ChainPEM(p.Root))
	p.RootsFile = filepath.Join(p.Dir, files.Roots)
	WriteFile(t, p.RootsFile, ca.ChainPEM(p.Issuing, p.Root))
	return p
}

// Station makes a station certificate and key under dir.
func (p *PKI) Station(t testing.TB, id, dir string) (certFile, keyFile string) {
	t.Helper()
	cert, key, err := ca.StationCert(p.StationCA, p.StationCAKey, nil, ca.Station{ID: id, Factory: "F1", Line: "L1"}, ca.ValidFor(time.Now(), 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, p.files.Cert), filepath.Join(dir, p.files.Key)
	WriteFile(t, certFile, ca.ChainPEM(cert, p.StationCA))
	WriteFile(t, keyFile, KeyPEM(t, key))
	return certFile, keyFile
}

// contract checks stand-in servers' exchanges against the station API's
// document, the one the real server serves.
var contract = sync.OnceValue(func() *openapitest.Checker {
	return openapitest.MustNew("api/openapi.yaml", api.OpenAPI())
})

// Serve starts a real TLS server that requires a station certificate and
// checks every exchange against api/openapi.yaml: a stand-in answer the
// real server could not give (an undocumented status, a body off its
// schema, a problem without its fields) fails the test, so the station
// client is never tested against answers that cannot happen.
func (p *PKI) Serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	return p.serve(t, contract().Handler(t, h))
}

// ServeOffContract is Serve without the contract check, for tests whose
// point is an answer the contract excludes (a proxy's HTML error page, a
// truncated body): the station client must survive it too.
func (p *PKI) ServeOffContract(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	return p.serve(t, h)
}

func (p *PKI) serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(p.StationCA)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected in tests
	srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.ServerCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// Issue signs a device certificate under the issuing CA with the real
// device profile (policy.Profile.Template).
func (p *PKI) Issue(t testing.TB, serial string, pub crypto.PublicKey, ims []imei.IMEI) *x509.Certificate {
	t.Helper()
	return IssueUnder(t, p.Issuing, p.IssuingKey, serial, pub, ims)
}

// IssueUnder signs a device certificate under parent with the real device
// profile.
func IssueUnder(t testing.TB, parent *x509.Certificate, parentKey crypto.Signer, serial string, pub crypto.PublicKey, ims []imei.IMEI) *x509.Certificate {
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

// RespFor is the server's answer for a device certificate cert with IMEIs
// ims, chained to the PKI's issuing CA and root.
func RespFor(p *PKI, serial string, cert *x509.Certificate, ims ...imei.IMEI) *wire.ProvisionResponse {
	r := &wire.ProvisionResponse{
		DeviceSerial:      serial,
		Certificate:       string(ca.ChainPEM(cert)),
		Chain:             string(ca.ChainPEM(p.Issuing, p.Root)),
		CertificateSerial: cert.SerialNumber.Text(16),
	}
	for _, m := range ims {
		r.IMEIs = append(r.IMEIs, m.String())
	}
	return r
}
