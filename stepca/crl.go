package stepca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// CRLWatcher keeps step-ca's current CRL (its /1.0/crl, read over TLS
// verified against step-ca's root) so the server can refuse revoked station
// certificates (api.RevocationChecker). Until the first successful read it
// knows no revocation. It is safe for concurrent use.
type CRLWatcher struct {
	url    string
	client *http.Client

	mu      sync.RWMutex
	revoked map[string]time.Time // decimal serial -> revocation time
	next    time.Time            // the CRL's nextUpdate
	fetched time.Time
}

// NewCRLWatcher reads the CRL at url (https://ca:9000/1.0/crl) with roots
// as the TLS trust.
func NewCRLWatcher(url string, roots *x509.CertPool) *CRLWatcher {
	return &CRLWatcher{url: url, revoked: map[string]time.Time{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}}}}
}

// Refresh reads the CRL now.
func (w *CRLWatcher) Refresh(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return tacerr.Wrap(tacerr.InvalidConfig, err, "step-ca CRL URL %s", w.url)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "read step-ca's CRL")
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "read step-ca's CRL")
	}
	if resp.StatusCode != http.StatusOK {
		return tacerr.New(tacerr.Unavailable, "step-ca's CRL: HTTP %d (is \"crl\": {\"enabled\": true} in its ca.json?)", resp.StatusCode)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "step-ca's CRL does not parse")
	}
	m := make(map[string]time.Time, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		m[e.SerialNumber.String()] = e.RevocationTime
	}
	w.mu.Lock()
	w.revoked, w.next, w.fetched = m, crl.NextUpdate, time.Now()
	w.mu.Unlock()
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
