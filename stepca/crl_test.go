package stepca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/tacerr"
)

// crlCA is a stand-in for step-ca's CRL endpoints (a real step-ca cannot be
// made to sign its CRL with another key or answer a redirect): a root, an
// intermediate under it that signs the CRLs, and an HTTPS server under the
// root serving /1.0/crl and /intermediates.pem.
type crlCA struct {
	root, inter   *x509.Certificate
	interKey      *ecdsa.PrivateKey
	srv           *httptest.Server
	mu            sync.Mutex
	crl           []byte
	extra         []*x509.Certificate // served at /intermediates.pem after the intermediate
	intermediates atomic.Int64        // reads of /intermediates.pem
}

func newCRLCA(t *testing.T) *crlCA {
	t.Helper()
	c := &crlCA{}
	rootKey := mustKey(t)
	c.root = caCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, rootKey, rootKey)
	c.interKey = mustKey(t)
	c.inter = caCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, c.root, c.interKey, rootKey)
	tlsKey := mustKey(t)
	leaf := caCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, c.root, tlsKey, rootKey)
	mux := http.NewServeMux()
	mux.HandleFunc("/1.0/crl", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		defer c.mu.Unlock()
		w.Write(c.crl)
	})
	mux.HandleFunc("/intermediates.pem", func(w http.ResponseWriter, r *http.Request) {
		c.intermediates.Add(1)
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, x := range append([]*x509.Certificate{c.inter}, c.extra...) {
			w.Write(pemCert(x.Raw))
		}
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/1.0/crl", http.StatusFound) })
	c.srv = httptest.NewUnstartedServer(mux)
	c.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: tlsKey}}}
	c.srv.StartTLS()
	t.Cleanup(c.srv.Close)
	return c
}

// caCert makes a certificate of tmpl valid for an hour either side of
// now, with key's public half, signed by signer under parent (nil:
// self-signed).
func caCert(t *testing.T, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent = tmpl
	}
	return mustCert(t, tmpl, parent, key.Public(), signer)
}

// serve makes the CRL the server answers: number, thisUpdate and
// nextUpdate, the serials revoked, signed with key (under the
// intermediate's name); it returns the certificate that signed it.
func (c *crlCA) serve(t *testing.T, number int64, this, next time.Time, key *ecdsa.PrivateKey, serials ...int64) *x509.Certificate {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: this})
	}
	// crypto/x509 refuses to sign with a key that is not the issuer's;
	// another key signs as a look-alike of the intermediate.
	issuer := c.inter
	if key != c.interKey {
		issuer = caCert(t, &x509.Certificate{SerialNumber: big.NewInt(9), Subject: c.inter.Subject, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}, nil, key, key)
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: this, NextUpdate: next,
		RevokedCertificateEntries: entries}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.crl = der
	c.mu.Unlock()
	return issuer
}

func revoked(w *stepca.CRLWatcher, serial int64) bool {
	_, ok := w.Revoked(&x509.Certificate{SerialNumber: big.NewInt(serial)})
	return ok
}

// TestCRLWatcherTakesOnlyStepCAsCRL: the watcher of step-ca's CRL takes a
// CRL only when step-ca's intermediate (chaining to the roots) signed it
// and it is not older than the one it keeps; otherwise the kept one stays
// in force. Before, any CRL the TLS connection delivered was taken, a
// redirect was followed, and an older CRL replaced a newer one (a revoked
// station admitted again).
func TestCRLWatcherTakesOnlyStepCAsCRL(t *testing.T) {
	ctx := context.Background()
	c := newCRLCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(c.root)
	w := stepca.NewCRLWatcher(c.srv.URL+"/1.0/crl", roots)
	now := time.Now().Truncate(time.Second)

	c.serve(t, 2, now.Add(-time.Minute), now.Add(time.Hour), c.interKey, 100)
	if err := w.Refresh(ctx); err != nil {
		t.Fatalf("step-ca's own CRL: %v", err)
	}
	if !revoked(w, 100) {
		t.Fatal("serial 100 not revoked after the first CRL")
	}

	t.Run("another key", func(t *testing.T) {
		c.serve(t, 3, now, now.Add(time.Hour), mustKey(t)) // revokes nothing: would admit 100 again
		err := w.Refresh(ctx)
		if !tacerr.Is(err, tacerr.UpstreamRefused) || !strings.Contains(err.Error(), "signed by none") {
			t.Fatalf("a CRL signed by another key: %v, want upstream_refused naming the signature", err)
		}
		if !revoked(w, 100) {
			t.Fatal("the CRL kept was replaced by one step-ca did not sign")
		}
	})
	t.Run("older", func(t *testing.T) {
		c.serve(t, 1, now.Add(-2*time.Minute), now.Add(time.Hour), c.interKey)
		if err := w.Refresh(ctx); !tacerr.Is(err, tacerr.UpstreamRefused) || !strings.Contains(err.Error(), "older") {
			t.Fatalf("an older CRL: %v, want upstream_refused saying it is older", err)
		}
		if !revoked(w, 100) {
			t.Fatal("an older CRL replaced the newer one kept")
		}
	})
	t.Run("redirect", func(t *testing.T) {
		c.serve(t, 4, now, now.Add(time.Hour), c.interKey)
		r := stepca.NewCRLWatcher(c.srv.URL+"/moved", roots)
		if err := r.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "redirect") {
			t.Fatalf("a redirect: %v, want it refused", err)
		}
	})
	t.Run("past its nextUpdate", func(t *testing.T) {
		c.serve(t, 5, now.Add(-10*time.Second), now.Add(-time.Second), c.interKey, 100, 200)
		err := w.Refresh(ctx)
		if err == nil || !strings.Contains(err.Error(), "nextUpdate") {
			t.Fatalf("a stale CRL: %v, want it reported", err)
		}
		if !revoked(w, 200) {
			t.Fatal("a stale CRL newer than the one kept was not taken")
		}
	})
	t.Run("its own issuer served beside step-ca's", func(t *testing.T) {
		// A CRL signed by a key whose certificate is served with the
		// intermediates but does not chain to the roots.
		own := c.serve(t, 7, now, now.Add(time.Hour), mustKey(t))
		c.mu.Lock()
		c.extra = []*x509.Certificate{own}
		c.mu.Unlock()
		err := w.Refresh(ctx)
		if !tacerr.Is(err, tacerr.UpstreamRefused) || !strings.Contains(err.Error(), "signed by none") {
			t.Fatalf("a CRL signed under a certificate outside the roots: %v, want upstream_refused", err)
		}
		if !revoked(w, 200) {
			t.Fatal("the CRL kept was replaced")
		}
	})
	// Read at the first CRL, then again for each of the two CRLs signed by
	// a key not among those read.
	if n := c.intermediates.Load(); n != 3 {
		t.Errorf("/intermediates.pem read %d times, want 3", n)
	}
}
