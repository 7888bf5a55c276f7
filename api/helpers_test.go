package api

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/openapitest"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// testPKI is a root, a station CA under it, a server certificate and a
// second, "manufacturer" CA (as a step-ca would be) whose certificates are
// trusted only through identity_map. All keys are software ECDSA keys.
type testPKI struct {
	dir                  string
	root                 *x509.Certificate
	rootKey              crypto.Signer
	stationCA            *x509.Certificate
	stationKey           crypto.Signer
	otherCA              *x509.Certificate
	otherKey             crypto.Signer
	serverCert, caFile   string
	serverKey, otherFile string
}

func genKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	now := time.Now()
	p := &testPKI{dir: t.TempDir(), rootKey: genKey(t), stationKey: genKey(t), otherKey: genKey(t)}
	var err error
	if p.root, err = ca.SelfSignedRoot(p.rootKey, pkix.Name{CommonName: "Test Root"}, ca.ValidFor(now, 72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.stationCA, err = ca.StationCA(p.root, p.rootKey, p.stationKey.Public(), pkix.Name{CommonName: "Test Station CA"}, ca.ValidFor(now, 48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p.otherCA, err = ca.SelfSignedRoot(p.otherKey, pkix.Name{CommonName: "Manufacturer step-ca"}, ca.ValidFor(now, 24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The server's certificate, signed by the root.
	sk := genKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "tacline test server"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.root, sk.Public(), p.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert = p.write(t, "server.pem", pemBlock("CERTIFICATE", der))
	p.serverKey = p.write(t, "server-key.pem", pemBlock("PRIVATE KEY", keyDER))
	p.caFile = p.write(t, "station-ca.pem", ca.ChainPEM(p.stationCA))
	p.otherFile = p.write(t, "other-ca.pem", ca.ChainPEM(p.otherCA))
	return p
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *testPKI) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is a server configuration over the PKI's files.
func (p *testPKI) config() Config {
	return Config{
		Listen:   "127.0.0.1:0",
		TLSCert:  p.serverCert,
		TLSKey:   p.serverKey,
		ClientCA: []string{p.caFile},
		MappedCA: []string{p.otherFile},
	}
}

// clientCert makes a station-CA client certificate for st.
func (p *testPKI) clientCert(t testing.TB, st ca.Station) tls.Certificate {
	t.Helper()
	return p.clientCertFrom(t, p.stationCA, p.stationKey, st)
}

// clientCertFrom makes a client certificate for st under the given CA.
func (p *testPKI) clientCertFrom(t testing.TB, caCert *x509.Certificate, caKey crypto.Signer, st ca.Station) tls.Certificate {
	t.Helper()
	cert, key, err := ca.StationCert(caCert, caKey, nil, st, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// customClientCert makes a client certificate under the manufacturer CA
// from a template (CN, URIs, DNS names set by the caller).
func (p *testPKI) customClientCert(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	k := genKey(t)
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.otherCA, k.Public(), p.otherKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// APIDoc checks every exchange of this package's tests (and api_test's)
// against api/openapi.yaml (see internal/openapitest);
// TestOpenAPIResponsesExercised checks that every documented response was
// seen.
var APIDoc = func() *openapitest.Checker {
	c := openapitest.MustNew("api/openapi.yaml", openAPIDoc)
	c.Refused = func(op string, status int, _ []byte) bool {
		// OCSP answers a malformed request 200 with its own
		// malformedRequest status (RFC 6960 section 2.3).
		return status/100 == 4 || op == "POST "+PathOCSP && status == http.StatusOK
	}
	c.Skip = func(r *http.Request) bool {
		// OCSP GET with the base64 request raw in the path, '/' included
		// (RFC 6960 A.1): OpenAPI path parameters cannot span segments.
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/v1/ocsp/")
		return ok && strings.Contains(rest, "/")
	}
	return c
}()

// testServer is the API served over TLS on a loopback listener.
type testServer struct {
	t    testing.TB
	srv  *Server
	url  string
	pki  *testPKI
	reg  *prometheus.Registry
	logs *syncBuffer
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startServer serves prov with cfg (from pki.config() when cfg is nil) on
// 127.0.0.1:0 until the test ends; setup runs on the server before it
// serves.
func startServer(t testing.TB, pki *testPKI, prov Provisioner, mutate func(*Config), setup ...func(*Server)) *testServer {
	t.Helper()
	cfg := pki.config()
	if mutate != nil {
		mutate(&cfg)
	}
	ts := &testServer{t: t, pki: pki, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	log := slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, prov, ts.reg, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	ts.srv, ts.url = srv, "https://"+ln.Addr().String()
	return ts
}

// client returns an HTTPS client presenting cert (none if nil) whose every
// exchange is checked against the OpenAPI document.
func (ts *testServer) client(cert *tls.Certificate) *http.Client {
	return &http.Client{Transport: APIDoc.Transport(ts.t, ts.transport(cert)), Timeout: 30 * time.Second}
}

// unchecked is c without the contract check, for the tests that force every
// error code through one route to test the mapping itself (the document
// lists what each route really answers, not every code on every route).
func unchecked(c *http.Client) *http.Client {
	u := *c
	if tr, ok := c.Transport.(interface{ Unwrap() http.RoundTripper }); ok {
		u.Transport = tr.Unwrap()
	}
	return &u
}

// transport is the plain HTTPS transport of client (for tests that change
// its TLS settings to fail the handshake).
func (ts *testServer) transport(cert *tls.Certificate) *http.Transport {
	roots := x509.NewCertPool()
	roots.AddCert(ts.pki.root)
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Transport{TLSClientConfig: cfg}
}

// response is a decoded answer.
type response struct {
	status  int
	header  http.Header
	body    []byte
	problem wire.Problem
}

// do sends method path with body (JSON-encoded unless it is a []byte) as
// application/json.
func (ts *testServer) do(t testing.TB, c *http.Client, method, path string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, ts.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, c, req)
}

// fakeProvisioner injects controlled results into the HTTP layer; it has no
// business logic. fail, when set for a method name, is returned by it.
type fakeProvisioner struct {
	mu       sync.Mutex
	stations map[string]provisioner.Station
	fail     map[string]error
	replayed bool
	ready    error
	calls    []string
	actors   []provisioner.Actor
	imeis    []imei.IMEI
	cert     *x509.Certificate
	observe  func(time.Duration)
	inputs   []any // the input of each call
}

func newFake(t testing.TB, pki *testPKI) *fakeProvisioner {
	return &fakeProvisioner{
		stations: map[string]provisioner.Station{},
		fail:     map[string]error{},
		imeis:    []imei.IMEI{imei.MustNew(101234, 17), imei.MustNew(101234, 18)},
		cert:     pki.stationCA, // any certificate will do as the "device certificate"
	}
}

func (f *fakeProvisioner) addStation(id string, disabled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stations[id] = provisioner.Station{ID: id, Disabled: disabled}
}

func (f *fakeProvisioner) setFail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

func (f *fakeProvisioner) record(method string, a provisioner.Actor, in any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method)
	f.actors = append(f.actors, a)
	f.inputs = append(f.inputs, in)
	return f.fail[method]
}

// input returns the input of the last call of method.
func (f *fakeProvisioner) input(method string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.calls) - 1; i >= 0; i-- {
		if f.calls[i] == method {
			return f.inputs[i]
		}
	}
	return nil
}

func (f *fakeProvisioner) issued(serial string) *provisioner.Issued {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &provisioner.Issued{
		DeviceSerial: serial, IMEIs: f.imeis, Certificate: f.cert, CertDER: f.cert.Raw,
		ChainPEM: string(ca.ChainPEM(f.cert)), CertSerial: "0a1b", IssuedAt: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC),
		Replayed: f.replayed,
	}
}

func (f *fakeProvisioner) Provision(_ context.Context, in provisioner.ProvisionInput) (*provisioner.Issued, error) {
	if err := f.record("Provision", in.Actor, in); err != nil {
		return nil, err
	}
	return f.issued(in.DeviceSerial), nil
}

func (f *fakeProvisioner) Allocate(_ context.Context, in provisioner.AllocateInput) (*provisioner.Allocation, error) {
	if err := f.record("Allocate", in.Actor, in); err != nil {
		return nil, err
	}
	return &provisioner.Allocation{RequestID: in.RequestID, Pool: in.Pool, Devices: [][]imei.IMEI{f.imeis}, CreatedAt: time.Now(), Replayed: f.replayed}, nil
}

func (f *fakeProvisioner) Bind(_ context.Context, in provisioner.BindInput) (*provisioner.Issued, error) {
	if err := f.record("Bind", in.Actor, in); err != nil {
		return nil, err
	}
	return f.issued(in.DeviceSerial), nil
}

func (f *fakeProvisioner) Void(_ context.Context, in provisioner.VoidInput) error {
	return f.record("Void", in.Actor, in)
}

func (f *fakeProvisioner) Reissue(_ context.Context, in provisioner.ReissueInput) (*provisioner.Issued, error) {
	if err := f.record("Reissue", in.Actor, in); err != nil {
		return nil, err
	}
	return f.issued(in.DeviceSerial), nil
}

func (f *fakeProvisioner) Revoke(_ context.Context, in provisioner.RevokeInput) error {
	return f.record("Revoke", in.Actor, in)
}

func (f *fakeProvisioner) Device(_ context.Context, a provisioner.Actor, serial string) (*provisioner.Device, error) {
	if err := f.record("Device", a, serial); err != nil {
		return nil, err
	}
	return &provisioner.Device{Serial: serial, State: "BOUND", Station: "F1-L1-S01", Pool: "p1", IMEIs: f.imeis, CertSerial: "0a1b", CertDER: f.cert.Raw, BoundAt: time.Now()}, nil
}

func (f *fakeProvisioner) IMEI(_ context.Context, a provisioner.Actor, m imei.IMEI) (store.IMEIRecord, error) {
	if err := f.record("IMEI", a, m); err != nil {
		return store.IMEIRecord{}, err
	}
	return store.IMEIRecord{IMEI: m, Pool: "p1", State: "BOUND", Caller: "F1-L1-S01", DeviceSerial: "SN1", ReservedAt: time.Now(), BoundAt: time.Now()}, nil
}

func (f *fakeProvisioner) Pools(_ context.Context, a provisioner.Actor) ([]store.PoolStats, error) {
	if err := f.record("Pools", a, nil); err != nil {
		return nil, err
	}
	return []store.PoolStats{{Pool: store.Pool{Name: "p1", TAC: 101234, SNRStart: 0, SNREnd: 999}, NextSNR: 19, Bound: 2, Free: 981}}, nil
}

func (f *fakeProvisioner) PoolsRemaining(context.Context) ([]store.PoolStats, error) {
	return []store.PoolStats{{Pool: store.Pool{Name: "p1", TAC: 101234, SNRStart: 0, SNREnd: 999}, NextSNR: 19, Free: 981}}, nil
}

// PersonCertificate: the fake records no role certificates (their check
// runs against a real ledger in the console's and the CLI's tests).
func (f *fakeProvisioner) PersonCertificate(_ context.Context, serial string) (store.PersonCert, error) {
	return store.PersonCert{}, tacerr.Field(tacerr.NotFound, "cert_serial", "no role certificate with serial %s is recorded", serial)
}

func (f *fakeProvisioner) Station(_ context.Context, id string) (provisioner.Station, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.stations[id]
	switch {
	case f.fail["Station"] != nil:
		return provisioner.Station{}, f.fail["Station"]
	case !ok:
		return provisioner.Station{}, tacerr.New(tacerr.Unauthorized, "station %s is not enrolled", id)
	case st.Disabled:
		return provisioner.Station{}, tacerr.New(tacerr.Forbidden, "station %s is disabled", id)
	}
	return st, nil
}

func (f *fakeProvisioner) Ready(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeProvisioner) SetSignObserver(o func(time.Duration)) { f.observe = o }
