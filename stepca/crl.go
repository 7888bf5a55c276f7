package stepca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// CRLWatcher keeps step-ca's current CRL (its /1.0/crl, read over TLS
// verified against step-ca's root) so the server can refuse revoked station
// certificates (api.RevocationChecker). A CRL is taken only if its
// signature verifies under one of step-ca's intermediates (its
// /intermediates.pem, each chaining to the roots) and it is not older
// than the one kept; until the first such read it knows no revocation. It
// is safe for concurrent use.
type CRLWatcher struct {
	url    string
	client *http.Client
	roots  *x509.CertPool

	mu      sync.RWMutex
	revoked map[string]time.Time // decimal serial -> revocation time
	this    time.Time            // the kept CRL's thisUpdate
	next    time.Time            // the CRL's nextUpdate
	fetched time.Time
	issuers []*x509.Certificate // step-ca's intermediates read so far, each verified to the roots
}

// NewCRLWatcher reads the CRL at url (https://ca:9000/1.0/crl) with roots
// as the TLS trust and the trust of the CRL's issuer. It follows no
// redirect: the CRL and the intermediates are read from step-ca itself.
func NewCRLWatcher(url string, roots *x509.CertPool) *CRLWatcher {
	return &CRLWatcher{url: url, roots: roots, revoked: map[string]time.Time{},
		client: &http.Client{Timeout: 10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}},
			CheckRedirect: func(req *http.Request, _ []*http.Request) error { return errCRLRedirect }}}
}

var errCRLRedirect = errors.New("step-ca answered a redirect; tacline follows none: set server.stepca_crl to step-ca's own /1.0/crl")

// get reads u (at most 32 MiB), or fails naming what; hint follows an
// HTTP error status.
func (w *CRLWatcher) get(ctx context.Context, u, what, hint string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "%s URL %s", what, u)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "read %s", what)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "read %s", what)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, tacerr.New(tacerr.Unavailable, "%s: HTTP %d%s", what, resp.StatusCode, hint)
	}
	return body, nil
}

// issuerOf returns the intermediate whose key signed crl: one read before,
// else one of step-ca's /intermediates.pem (same host as the CRL) that
// chains to the roots.
func (w *CRLWatcher) issuerOf(ctx context.Context, crl *x509.RevocationList) (*x509.Certificate, error) {
	w.mu.RLock()
	known := w.issuers
	w.mu.RUnlock()
	for _, c := range known {
		if crl.CheckSignatureFrom(c) == nil {
			return c, nil
		}
	}
	base, err := url.Parse(w.url)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "step-ca CRL URL %s", w.url)
	}
	iu := base.ResolveReference(&url.URL{Path: "/intermediates.pem"}).String()
	body, err := w.get(ctx, iu, "step-ca's intermediates", "")
	if err != nil {
		return nil, err
	}
	blocks, err := pemblock.Decode(body, tacerr.UpstreamRefused, "", "CERTIFICATE")
	if err != nil {
		return nil, tacerr.Prefixed("step-ca's intermediates at "+iu+" are not PEM certificates only; the CRL read before stays in force", err, tacerr.UpstreamRefused)
	}
	var found *x509.Certificate
	var fresh []*x509.Certificate
	for _, b := range blocks {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: w.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			continue // not step-ca's, as far as the roots tell
		}
		fresh = append(fresh, c)
		if found == nil && crl.CheckSignatureFrom(c) == nil {
			found = c
		}
	}
	w.mu.Lock()
	w.issuers = fresh
	w.mu.Unlock()
	if found == nil {
		return nil, tacerr.New(tacerr.UpstreamRefused, "step-ca's CRL (issuer %q) is signed by none of the %d intermediates at %s that chain to server.stepca_station_ca; not taken, the CRL read before stays in force", crl.Issuer, len(fresh), iu)
	}
	return found, nil
}

// Refresh reads the CRL now. A CRL whose signature does not verify under
// step-ca's intermediates, or older than the one kept, is not taken (the
// kept one stays in force, and the error says why). A CRL past its
// nextUpdate is taken (it is the newest step-ca has) and reported: the
// revocations step-ca made since it was signed are not in it.
func (w *CRLWatcher) Refresh(ctx context.Context) error {
	body, err := w.get(ctx, w.url, "step-ca's CRL", ` (is "crl": {"enabled": true} in its ca.json?)`)
	if err != nil {
		return err
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		return tacerr.Wrap(tacerr.UpstreamRefused, err, "step-ca's CRL does not parse")
	}
	if _, err := w.issuerOf(ctx, crl); err != nil {
		return err
	}
	m := make(map[string]time.Time, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		m[e.SerialNumber.String()] = e.RevocationTime
	}
	now := time.Now()
	w.mu.Lock()
	if crl.ThisUpdate.Before(w.this) {
		kept := w.this
		w.mu.Unlock()
		return tacerr.New(tacerr.UpstreamRefused, "step-ca's CRL of %s is older than the one kept (%s); not taken", crl.ThisUpdate.UTC().Format(time.RFC3339), kept.UTC().Format(time.RFC3339))
	}
	w.revoked, w.this, w.next, w.fetched = m, crl.ThisUpdate, crl.NextUpdate, now
	w.mu.Unlock()
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return tacerr.New(tacerr.UpstreamRefused, "step-ca's CRL is past its nextUpdate (%s): stations revoked since it was signed are still admitted; check step-ca's CRL generation", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// Revoked reports whether cert's serial is on the CRL, and since when.
func (w *CRLWatcher) Revoked(cert *x509.Certificate) (time.Time, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	at, ok := w.revoked[cert.SerialNumber.String()]
	return at, ok
}

// Run refreshes every interval until ctx ends; failures go to logf.
func (w *CRLWatcher) Run(ctx context.Context, interval time.Duration, logf func(string, ...any)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := w.Refresh(ctx); err != nil && ctx.Err() == nil {
			logf("%v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// String describes the watcher's state for logs.
func (w *CRLWatcher) String() string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return fmt.Sprintf("step-ca CRL %s: %d revoked, read %s", w.url, len(w.revoked), w.fetched.Format(time.RFC3339))
}
