package site

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// HTTPClient is a site's HQClient: HTTPS with the site's client
// certificate, HQ's server certificate verified against CAFile.
type HTTPClient struct {
	base string
	site string
	c    *http.Client
}

var _ HQClient = (*HTTPClient)(nil)

// NewHTTPClient connects site name to HQ at base (https://host:port) with
// the certificate and key files and the CA file that verifies HQ.
func NewHTTPClient(base, name, certFile, keyFile, caFile string) (*HTTPClient, error) {
	pair, err := pemblock.KeyPair(certFile, keyFile, tacerr.InvalidConfig, "site.cert_file", "site.key_file")
	if err != nil {
		return nil, err
	}
	roots, err := pemblock.CertPool(caFile, tacerr.InvalidConfig, "site.ca_file")
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{pair}},
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second, MaxIdleConnsPerHost: 2}
	return &HTTPClient{base: strings.TrimSuffix(base, "/"), site: name, c: &http.Client{Transport: tr, Timeout: 60 * time.Second}}, nil
}

func (h *HTTPClient) path(p string) string { return h.base + strings.Replace(p, "{site}", h.site, 1) }

// Lease implements HQClient.
func (h *HTTPClient) Lease(ctx context.Context, req wire.LeaseRequest) (wire.Lease, error) {
	var out wire.Lease
	return out, h.do(ctx, http.MethodPost, wire.PathSiteLeases, req, &out)
}

// Sync implements HQClient.
func (h *HTTPClient) Sync(ctx context.Context, req wire.SiteSyncRequest) (wire.SiteSyncResponse, error) {
	var out wire.SiteSyncResponse
	return out, h.do(ctx, http.MethodPost, wire.PathSiteSync, req, &out)
}

// Status implements HQClient.
func (h *HTTPClient) Status(ctx context.Context) (wire.SiteStatus, error) {
	var out wire.SiteStatus
	return out, h.do(ctx, http.MethodGet, wire.PathSiteStatus, nil, &out)
}

// do sends one request; a transport failure is unavailable (retryable), a
// problem document becomes a tacerr error with its code.
func (h *HTTPClient) do(ctx context.Context, method, p string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "encode request")
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.path(p), body)
	if err != nil {
		return tacerr.Wrap(tacerr.InvalidConfig, err, "site.hq_url")
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "headquarters unreachable")
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "read headquarters' answer")
	}
	if resp.StatusCode >= 300 {
		var pr wire.Problem
		if json.Unmarshal(data, &pr) != nil || pr.Code == "" {
			return tacerr.New(tacerr.Unavailable, "headquarters answered %s", resp.Status)
		}
		e := tacerr.New(tacerr.Code(pr.Code), "headquarters: %s", pr.Detail)
		e.Field = pr.Field
		return e
	}
	if err := json.Unmarshal(data, out); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "decode headquarters' answer")
	}
	return nil
}
