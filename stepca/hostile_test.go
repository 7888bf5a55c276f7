package stepca_test

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
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/tacerr"
)

// hostileCA is a TLS server that answers /1.0/sign as a step-ca gone
// wrong would (a narrow fake: a real step-ca signs the CSR's key with its
// own issuer, so it cannot be made to answer these). Its TLS certificate
// and the issuer chain to root, written to rootFile.
type hostileCA struct {
	url, rootFile, issuerFile string
	root, issuer              *x509.Certificate
	issuerKey                 crypto.Signer
	answer                    func(csr *x509.CertificateRequest) []byte         // the certificate DER to return
	serve                     func(w http.ResponseWriter, r *http.Request) bool // when set and true: answered
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startHostileCA(t *testing.T) *hostileCA {
	t.Helper()
	now := time.Now()
	rootKey, issKey, tlsKey := mustKey(t), mustKey(t), mustKey(t)
	caTmpl := func(cn string, serial int64) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	}
	h := &hostileCA{issuerKey: issKey}
	h.root = mustCert(t, caTmpl("Hostile Root", 1), caTmpl("Hostile Root", 1), rootKey.Public(), rootKey)
	h.issuer = mustCert(t, caTmpl("Hostile Issuer", 2), h.root, issKey.Public(), rootKey)
	srvCert := mustCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature},
		h.issuer, tlsKey.Public(), issKey)
	dir := t.TempDir()
	h.rootFile, h.issuerFile = filepath.Join(dir, "root.crt"), filepath.Join(dir, "issuer.crt")
	for f, c := range map[string]*x509.Certificate{h.rootFile: h.root, h.issuerFile: h.issuer} {
		if err := os.WriteFile(f, pemCert(c.Raw), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.serve != nil && h.serve(w, r) {
			return
		}
		var req struct {
			CSR string `json:"csr"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, _ := pem.Decode([]byte(req.CSR))
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		crt := string(pemCert(h.answer(csr)))
		ca := string(pemCert(h.issuer.Raw))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"crt": crt, "ca": ca, "certChain": []string{crt, ca}})
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw, h.issuer.Raw}, PrivateKey: tlsKey}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// leafFor is a client certificate for pub signed by the hostile issuer,
// naming station S1 as the station template does.
func (h *hostileCA) leafFor(t *testing.T, pub crypto.PublicKey) []byte {
	return h.leafNamed(t, pub, "S1", stepca.StationURNPrefix+"S1")
}

// leafNamed is a client certificate for pub with common name cn and URI
// SANs uris, signed by the hostile issuer.
func (h *hostileCA) leafNamed(t *testing.T, pub crypto.PublicKey, cn string, uris ...string) []byte {
	now := time.Now()
	var us []*url.URL
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		us = append(us, pu)
	}
	return mustCert(t, &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn}, URIs: us, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, h.issuer, pub, h.issuerKey).Raw
}

// ott is a one-time token as `step ca token` makes one (the fake does not
// check it).
func (h *hostileCA) ott(t *testing.T, station string) string {
	t.Helper()
	tok, err := stepca.StationToken(h.url, "p", mustKey(t), station, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestBootstrapRefusesAWrongCertificate: a station identity step-ca
// answers is taken only when it certifies the key made for it, chains to
// the root and names the station the one-time token was made for (its
// subject: common name and the one URI SAN urn:tacline:station:<ID>);
// otherwise nothing is written to the station's directory (an identity
// already there is kept).
func TestBootstrapRefusesAWrongCertificate(t *testing.T) {
	h := startHostileCA(t)
	other, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "S1"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}, &x509.Certificate{Subject: pkix.Name{CommonName: "elsewhere"}}, mustKey(t).Public(), mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		answer func(csr *x509.CertificateRequest) []byte
	}{
		{"another key", func(*x509.CertificateRequest) []byte { return h.leafFor(t, mustKey(t).Public()) }},
		{"another root", func(*x509.CertificateRequest) []byte { return other }},
		{"another station", func(csr *x509.CertificateRequest) []byte {
			return h.leafNamed(t, csr.PublicKey, "S2", stepca.StationURNPrefix+"S2")
		}},
		{"another station's URI", func(csr *x509.CertificateRequest) []byte {
			return h.leafNamed(t, csr.PublicKey, "S1", stepca.StationURNPrefix+"S2")
		}},
		{"no station URI", func(csr *x509.CertificateRequest) []byte { return h.leafNamed(t, csr.PublicKey, "S1") }},
		{"a second URI", func(csr *x509.CertificateRequest) []byte {
			return h.leafNamed(t, csr.PublicKey, "S1", stepca.StationURNPrefix+"S1", "urn:tacline:role:admin")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.answer = tc.answer
			dir := filepath.Join(t.TempDir(), "S1")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			kept := []byte("the identity a station already has\n")
			if err := os.WriteFile(filepath.Join(dir, stepca.StationKeyFile), kept, 0o600); err != nil {
				t.Fatal(err)
			}
			cert, err := stepca.Bootstrap(context.Background(), h.url, h.rootFile, h.ott(t, "S1"), dir)
			if !tacerr.Is(err, tacerr.UpstreamRefused) || cert != nil {
				t.Fatalf("bootstrap answered a certificate %v, err %v; want upstream_refused", cert != nil, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, stepca.StationKeyFile)); !bytes.Equal(b, kept) || stepca.IsBootstrapped(dir) {
				t.Fatalf("a refused answer changed the station's directory (key.pem %q)", b)
			}
		})
	}
	// The fake's right answer is taken (so the refusals above are the checks').
	h.answer = func(csr *x509.CertificateRequest) []byte { return h.leafFor(t, csr.PublicKey) }
	if _, err := stepca.Bootstrap(context.Background(), h.url, h.rootFile, h.ott(t, "S1"), filepath.Join(t.TempDir(), "ok")); err != nil {
		t.Fatalf("bootstrap with a right answer: %v", err)
	}
}

// TestRASignRefusesAnUnknownKeyType: a certificate from step-ca whose
// public key Go cannot parse (an unknown algorithm) is refused as a
// mismatch that may have signed, not a crash of the server.
func TestRASignRefusesAnUnknownKeyType(t *testing.T) {
	h := startHostileCA(t)
	ra, csr, lint := h.raFor(t)
	// id-ecPublicKey (1.2.840.10045.2.1) becomes 1.2.840.10045.2.9, an
	// algorithm crypto/x509 parses as unknown (PublicKey nil).
	ecOID := []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}
	unknown := bytes.Replace(lint.Raw, ecOID, []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x09}, 1)
	if c, err := x509.ParseCertificate(unknown); err != nil || c.PublicKey != nil {
		t.Fatalf("the hostile certificate: %v (public key %T), want one with an unknown key", err, c.PublicKey)
	}
	h.answer = func(*x509.CertificateRequest) []byte { return unknown }
	_, err := ra.Sign(context.Background(), lint, csr, "dev", nil)
	fl, ok := stepca.AsFailure(err)
	if !ok || !fl.Ambiguous || fl.Reason != "mismatch" || !tacerr.Is(err, tacerr.UpstreamRefused) {
		t.Fatalf("a certificate with an unknown key type: %v (%+v), want an ambiguous upstream_refused mismatch", err, fl)
	}
}

// raFor is an RA of the hostile step-ca and a device CSR with the
// certificate a right answer would be.
func (h *hostileCA) raFor(t *testing.T) (*stepca.RA, *x509.CertificateRequest, *x509.Certificate) {
	t.Helper()
	ra, err := stepca.New(stepca.Config{URL: h.url, Root: h.rootFile, IssuerCert: h.issuerFile, Provisioner: "p", KeyLabel: "ra"}, mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	devKey := mustKey(t)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "dev"}}, devKey)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	lint, err := x509.ParseCertificate(h.leafFor(t, devKey.Public()))
	if err != nil {
		t.Fatal(err)
	}
	h.answer = func(*x509.CertificateRequest) []byte { return lint.Raw }
	return ra, csr, lint
}

// TestStepCAAnswersGuarded: tacline follows no redirect from step-ca (the
// one-time token, which lets its holder have a certificate signed, would
// go wherever it points, here in clear text) and reads no answer larger
// than 1 MiB; both are ambiguous refusals. The fake's plain answer is
// taken, so the refusals are the guard's.
func TestStepCAAnswersGuarded(t *testing.T) {
	h := startHostileCA(t)
	ra, csr, lint := h.raFor(t)
	ctx := context.Background()
	if _, err := ra.Sign(ctx, lint, csr, "dev", nil); err != nil {
		t.Fatalf("the fake's right answer: %v", err)
	}

	var leaked atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer plain.Close()
	h.serve = func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
		return true
	}
	_, err := ra.Sign(ctx, lint, csr, "dev", nil)
	fl, ok := stepca.AsFailure(err)
	if !ok || !fl.Ambiguous || !tacerr.Is(err, tacerr.UpstreamRefused) || !strings.Contains(err.Error(), "redirect") || leaked.Load() != 0 {
		t.Errorf("a redirect to http: %v (%+v), %d requests sent there; want an ambiguous upstream_refused naming the redirect and none sent", err, fl, leaked.Load())
	}

	h.serve = func(w http.ResponseWriter, r *http.Request) bool {
		crt, ca := string(pemCert(lint.Raw)), string(pemCert(h.issuer.Raw))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"crt": crt, "ca": ca, "padding": strings.Repeat("x", 2<<20)})
		return true
	}
	_, err = ra.Sign(ctx, lint, csr, "dev", nil)
	if fl, ok := stepca.AsFailure(err); !ok || !fl.Ambiguous || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a 2 MiB answer: %v (%+v), want an ambiguous failure naming the size", err, fl)
	}
}

// TestRenewBounded: a step-ca that takes a renewal and never answers
// fails the renewal after the Renewer's timeout (the renewal had no
// timeout: Run waited for ever and the certificate expired).
func TestRenewBounded(t *testing.T) {
	h := startHostileCA(t)
	h.answer = func(csr *x509.CertificateRequest) []byte { return h.leafFor(t, csr.PublicKey) }
	dir := filepath.Join(t.TempDir(), "S1")
	if _, err := stepca.Bootstrap(context.Background(), h.url, h.rootFile, h.ott(t, "S1"), dir); err != nil {
		t.Fatal(err)
	}
	r, err := stepca.NewRenewer(dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Timeout = 100 * time.Millisecond
	stop := make(chan struct{})
	defer close(stop)
	h.serve = func(w http.ResponseWriter, req *http.Request) bool {
		select { // hold the renewal until the client gives up (or the test ends)
		case <-req.Context().Done():
		case <-stop:
		}
		return true
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Renew(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a renewal step-ca never answered succeeded")
		}
	case <-time.After(time.Minute): // far beyond the 100ms timeout: the renewal hangs
		t.Fatal("Renew still waiting for a step-ca that never answers")
	}
}

// TestStepCAErrorAnswersKeepTheirStatus: an error answer that is not
// step-ca's JSON (a proxy in front of it) is classified by its HTTP
// status: a 504 may come after step-ca signed (ambiguous: the serial is
// revoked before the intent is given up), a 403 is a refusal.
func TestStepCAErrorAnswersKeepTheirStatus(t *testing.T) {
	h := startHostileCA(t)
	ra, csr, lint := h.raFor(t)
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		ambiguous               bool
		reason                  string
	}{
		{"504 with JSON without status", "application/json", `{"error":"upstream timed out"}`, http.StatusGatewayTimeout, true, "server_error"},
		{"502 HTML page", "text/html", "<html><body><h1>502 Bad Gateway</h1></body></html>", http.StatusBadGateway, true, "server_error"},
		{"403 HTML page", "text/html", "<html>Forbidden</html>", http.StatusForbidden, false, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.serve = func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Content-Type", tc.contentType)
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
				return true
			}
			_, err := ra.Sign(context.Background(), lint, csr, "dev", nil)
			fl, ok := stepca.AsFailure(err)
			if !ok || fl.Ambiguous != tc.ambiguous || fl.Reason != tc.reason || !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", tc.status)) {
				t.Fatalf("%v (%+v), want reason %s, ambiguous %v, naming HTTP %d", err, fl, tc.reason, tc.ambiguous, tc.status)
			}
		})
	}
}
