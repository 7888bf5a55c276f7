package factory

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/internal/retry"
	"github.com/tacline/tacline/tacerr"
)

// Defaults of ClientConfig.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultBaseBackoff = 50 * time.Millisecond
	DefaultMaxBackoff  = 5 * time.Second
	// DefaultRetryBudget is how long after a request's first attempt a
	// retry may still start: long enough to ride out a database failover
	// or an HSM reconnect.
	DefaultRetryBudget = 2 * time.Minute
	// maxResponseBytes bounds a response body (a pool list of a large
	// manufacturer stays far below it).
	maxResponseBytes = 8 << 20
	// maxProblemBytes bounds the part of an error body that is read.
	maxProblemBytes = 64 << 10
)

// ClientConfig configures a Client. ServerURL, CertFile, KeyFile and CAFile
// are required; zero durations and counts take the defaults above.
type ClientConfig struct {
	ServerURL string // https://host:port, no path
	CertFile  string // the station's client certificate (PEM; intermediates may follow)
	KeyFile   string // its private key (PEM)
	CAFile    string // PEM bundle that verifies the server's certificate
	// Timeout bounds one attempt (connect, TLS, request, response).
	Timeout time.Duration
	// MaxRetries bounds the retries after the first attempt; 0 means no
	// bound but RetryBudget, a negative value means no retries.
	MaxRetries int
	// RetryBudget is how long after the first attempt a retry may still
	// start (default DefaultRetryBudget).
	RetryBudget time.Duration
	// BaseBackoff bounds the first wait, doubling up to MaxBackoff; each
	// wait is drawn at random below its bound (full jitter), and is at
	// least the server's Retry-After.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// OnRetry, if set, is called before each retry with the attempt that
	// failed (1-based) and its error. It must be safe for concurrent use.
	OnRetry func(attempt int, err error)
	// GetClientCertificate, when set, gives the station certificate
	// instead of CertFile/KeyFile: a certificate that is renewed while the
	// client runs (stepca.Renewer). When it changes, new requests go over
	// new connections, which present it; the old connections finish what
	// they carry and are closed.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Client is a station's client of the /v1 API. It is safe for concurrent
// use and keeps connections alive between requests.
type Client struct {
	base   *url.URL
	http   *http.Client
	cfg    ClientConfig
	policy retry.Policy
	sleep  func(context.Context, time.Duration) error // replaced in tests
	now    func() time.Time                           // replaced in tests
	// lastCert is the renewable certificate seen last and swap its
	// per-certificate connection pools (followCertificate).
	lastCert atomic.Pointer[tls.Certificate]
	swap     *swapTransport
}

// NewClient loads the station's credentials and returns a Client. Errors
// name the field at fault (code invalid_input).
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.ServerURL == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "server_url", "is required (https://host:port)")
	}
	base, err := url.Parse(cfg.ServerURL)
	if err != nil || base.Scheme != "https" || base.Host == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "server_url", "%q is not an https://host:port URL; the API is served over mutual TLS only", cfg.ServerURL)
	}
	base.Path = strings.TrimSuffix(base.Path, "/")
	tc := &tls.Config{MinVersion: tls.VersionTLS12, GetClientCertificate: cfg.GetClientCertificate}
	if cfg.GetClientCertificate == nil {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, tacerr.Field(tacerr.InvalidInput, "cert_file", "the station certificate and key files are required")
		}
		pair, err := pemblock.KeyPair(cfg.CertFile, cfg.KeyFile, tacerr.InvalidInput, "cert_file", "key_file")
		if err != nil {
			return nil, tacerr.Prefixed("station certificate and key: cannot load them as a matching PEM pair", err, tacerr.InvalidInput)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	roots, err := loadPool(cfg.CAFile, "ca_file")
	if err != nil {
		return nil, err
	}
	tc.RootCAs = roots
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = DefaultRetryBudget
	}
	if cfg.BaseBackoff <= 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	tr := &http.Transport{
		Proxy: nil, // stations talk to the server directly
		DialContext: (&net.Dialer{
			Timeout:   cfg.Timeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: time.Second,
		// A station sends one request at a time; a load run shares one
		// station identity between many workers. Keep enough idle
		// connections that no worker has to handshake again.
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	policy := retry.Policy{Initial: cfg.BaseBackoff, Max: cfg.MaxBackoff, Budget: cfg.RetryBudget}
	switch {
	case cfg.MaxRetries > 0:
		policy.Attempts = 1 + cfg.MaxRetries
	case cfg.MaxRetries < 0:
		policy.Attempts = 1
	}
	c := &Client{
		base:   base,
		http:   &http.Client{Transport: tr, CheckRedirect: noRedirects},
		cfg:    cfg,
		policy: policy,
		sleep:  retry.Sleep,
		now:    time.Now,
	}
	if cfg.GetClientCertificate != nil {
		// A renewable certificate: connections are pooled per certificate
		// (see followCertificate).
		st := &swapTransport{next: func() *http.Transport { return tr.Clone() }}
		st.cur.Store(tr)
		c.swap, c.http.Transport = st, st
	}
	return c, nil
}

// swapTransport sends requests through its current transport; renew
// replaces it with a fresh one (a new connection pool) and retires the old
// one, whose connections finish what they carry and are never reused.
type swapTransport struct {
	cur  atomic.Pointer[http.Transport]
	next func() *http.Transport
}

func (t *swapTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.cur.Load().RoundTrip(r)
}

func (t *swapTransport) CloseIdleConnections() { t.cur.Load().CloseIdleConnections() }

func (t *swapTransport) renew(grace time.Duration) {
	old := t.cur.Swap(t.next())
	old.CloseIdleConnections()
	time.AfterFunc(grace, old.CloseIdleConnections)
}

// followCertificate moves new requests to a fresh connection pool when the
// renewable station certificate changed (ClientConfig.GetClientCertificate),
// so that no request goes out over a connection authenticated with the old
// certificate, which expires a third of its life later.
func (c *Client) followCertificate() {
	if c.swap == nil {
		return
	}
	cur, err := c.cfg.GetClientCertificate(nil)
	if err != nil || cur == nil || c.lastCert.Swap(cur) == cur {
		return
	}
	c.swap.renew(2 * c.cfg.Timeout)
}

// Close releases the client's idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }

// loadPool reads a PEM bundle of CA certificates.
func loadPool(file, field string) (*x509.CertPool, error) {
	if file == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, field, "a PEM file of CA certificates is required")
	}
	return pemblock.CertPool(file, tacerr.InvalidInput, field)
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// APIError is an error response of the server: its HTTP status and the
// problem document (synthesised from the status when the body was not one).
type APIError struct {
	Status  int
	Problem wire.Problem
	// RetryAfter is the server's Retry-After, zero if none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server answered %d", e.Status)
	if e.Problem.Code != "" {
		b.WriteString(" " + e.Problem.Code)
	}
	if e.Problem.Field != "" {
		b.WriteString(" (" + e.Problem.Field + ")")
	}
	switch {
	case e.Problem.Detail != "":
		b.WriteString(": " + e.Problem.Detail)
	case e.Problem.Title != "":
		b.WriteString(": " + e.Problem.Title)
	}
	return b.String()
}

// Retryable reports whether the same request may succeed later.
func (e *APIError) Retryable() bool {
	if e.Problem.Retryable {
		return true
	}
	if e.Problem.Code != "" {
		// The server said what happened and that a retry will not help
		// (a 503 "HSM needs an operator", say); only a rate limit passes.
		return e.Status == http.StatusTooManyRequests
	}
	// No problem document: an answer from a proxy or load balancer.
	switch e.Status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// ErrorCode returns the stable code of an error returned by this package:
// the problem code of an *APIError ("http_<status>" when the server gave
// none), the tacerr code otherwise, "canceled" or "timeout" for context
// errors.
func ErrorCode(err error) string {
	var ae *APIError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ae):
		if ae.Problem.Code != "" {
			return ae.Problem.Code
		}
		return fmt.Sprintf("http_%d", ae.Status)
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return string(tacerr.CodeOf(err))
}

// Provision asks for a device's IMEIs and certificate. An empty RequestID is
// filled with a random one, kept across retries.
func (c *Client) Provision(ctx context.Context, req wire.ProvisionRequest) (*wire.ProvisionResponse, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	var out wire.ProvisionResponse
	if err := c.do(ctx, http.MethodPost, wire.PathProvision, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Allocate reserves IMEIs for devices not yet programmed.
func (c *Client) Allocate(ctx context.Context, req wire.AllocationRequest) (*wire.AllocationResponse, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	var out wire.AllocationResponse
	if err := c.do(ctx, http.MethodPost, wire.PathAllocations, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Bind binds pre-allocated IMEIs to a device and returns its identity.
func (c *Client) Bind(ctx context.Context, req wire.BindRequest) (*wire.ProvisionResponse, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	var out wire.ProvisionResponse
	if err := c.do(ctx, http.MethodPost, wire.PathBind, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Void voids an IMEI forever and returns its record.
func (c *Client) Void(ctx context.Context, imeiStr string, req wire.VoidRequest) (*wire.IMEIStatus, error) {
	var out wire.IMEIStatus
	if err := c.do(ctx, http.MethodPost, pathWith(wire.PathVoidIMEI, "{imei}", imeiStr), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Reissue issues a new certificate for a reworked device.
func (c *Client) Reissue(ctx context.Context, serial string, req wire.ReissueRequest) (*wire.ProvisionResponse, error) {
	if req.RequestID == "" {
		req.RequestID = NewRequestID()
	}
	var out wire.ProvisionResponse
	if err := c.do(ctx, http.MethodPost, pathWith(wire.PathReissue, "{serial}", serial), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Revoke revokes a device's certificate and returns the device's record.
func (c *Client) Revoke(ctx context.Context, serial string, req wire.RevokeRequest) (*wire.DeviceStatus, error) {
	var out wire.DeviceStatus
	if err := c.do(ctx, http.MethodPost, pathWith(wire.PathRevoke, "{serial}", serial), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Device returns a device's record.
func (c *Client) Device(ctx context.Context, serial string) (*wire.DeviceStatus, error) {
	var out wire.DeviceStatus
	if err := c.do(ctx, http.MethodGet, pathWith(wire.PathDevice, "{serial}", serial), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// IMEI returns an IMEI's ledger record.
func (c *Client) IMEI(ctx context.Context, imeiStr string) (*wire.IMEIStatus, error) {
	var out wire.IMEIStatus
	if err := c.do(ctx, http.MethodGet, pathWith(wire.PathIMEI, "{imei}", imeiStr), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Pools returns the pools the station may draw from, with utilisation.
func (c *Client) Pools(ctx context.Context) (*wire.PoolList, error) {
	var out wire.PoolList
	if err := c.do(ctx, http.MethodGet, wire.PathPools, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// pathWith fills a path parameter, escaped as one path segment.
func pathWith(pattern, param, value string) string {
	return strings.Replace(pattern, param, url.PathEscape(value), 1)
}

// NewRequestID returns 128 random bits in hex: an idempotency key.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// do sends the request, retrying as the package comment says, and decodes a
// 2xx body into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	c.followCertificate()
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "encode %s %s", method, path)
		}
		if len(body) > wire.MaxBodyBytes {
			return tacerr.New(tacerr.InvalidInput, "%s %s: the request is %d bytes, over the API's %d-byte limit", method, path, len(body), wire.MaxBodyBytes)
		}
	}
	// Not JoinPath: it would escape the already escaped segments again.
	u := c.base.Scheme + "://" + c.base.Host + c.base.Path + path
	run := c.policy.Start(c.now())
	for attempt := 1; ; attempt++ {
		retryAfter, err := c.once(ctx, method, u, body, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, errors.Join(ctx.Err(), err))
		}
		if !retryable(err) {
			return wrapFinal(method, path, attempt, err)
		}
		wait, ok := run.Next(c.now(), retryAfter)
		if !ok {
			return wrapFinal(method, path, attempt, err)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return wrapFinal(method, path, attempt, err)
		}
		if c.cfg.OnRetry != nil {
			c.cfg.OnRetry(attempt, err)
		}
		if err := c.sleep(ctx, wait); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
}

// once makes one attempt. It returns the server's Retry-After with a
// retryable error response.
func (c *Client) once(ctx context.Context, method, u string, body []byte, out any) (time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, u, rd)
	if err != nil {
		return 0, tacerr.Wrap(tacerr.InvalidInput, err, "build %s %s", method, u)
	}
	req.Header.Set("Accept", "application/json, "+wire.ProblemContentType)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, &netError{err: err}
	}
	defer func() {
		// Drain a little so the connection can be reused, then close.
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return 0, nil
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
		if err != nil {
			return 0, &netError{err: err}
		}
		if len(data) > maxResponseBytes {
			return 0, tacerr.New(tacerr.Internal, "%s %s: response larger than %d bytes", method, u, maxResponseBytes)
		}
		if err := json.Unmarshal(data, out); err != nil {
			return 0, tacerr.Wrap(tacerr.Internal, err, "%s %s: the server's %d response is not the expected JSON", method, u, resp.StatusCode)
		}
		return 0, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxProblemBytes))
	if err != nil {
		return 0, &netError{err: err}
	}
	ae := &APIError{Status: resp.StatusCode, Problem: parseProblem(resp.StatusCode, resp.Header.Get("Content-Type"), data)}
	ae.RetryAfter = ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return ae.RetryAfter, ae
}

// parseProblem decodes a problem document or synthesises one from the
// status and the start of the body.
func parseProblem(status int, contentType string, data []byte) wire.Problem {
	var p wire.Problem
	if strings.Contains(contentType, "json") && json.Unmarshal(data, &p) == nil && (p.Code != "" || p.Title != "") {
		if p.Status == 0 {
			p.Status = status
		}
		return p
	}
	p = wire.Problem{Status: status, Title: http.StatusText(status)}
	if s := strings.TrimSpace(string(data)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		p.Detail = s
	}
	return p
}

// netError marks a transport failure: the request may or may not have
// reached the server.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// retryable classifies an attempt's error.
func retryable(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	var ne *netError
	if !errors.As(err, &ne) {
		return false // decoding and local errors do not heal
	}
	// A server certificate that does not verify, or a client certificate
	// the server refused, will not change on retry.
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return false
	}
	return !refusedByServer(err)
}

// refusedByServer reports whether the server refused the station's
// certificate: crypto/tls reports the peer's alert as a *net.OpError
// "remote error" around an unexported alert type, so the alert is
// recognised by its text.
func refusedByServer(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil {
		_, ok := refusedAlerts[oe.Err.Error()]
		return ok
	}
	return false
}

// refusedAlerts are the TLS alerts (RFC 8446 §6.2) by which a server
// refuses the client's certificate or TLS configuration, in crypto/tls's
// wording; a retry would meet the same refusal.
var refusedAlerts = map[string]struct{}{
	"tls: bad certificate":                {},
	"tls: unsupported certificate":        {},
	"tls: revoked certificate":            {},
	"tls: expired certificate":            {},
	"tls: unknown certificate":            {},
	"tls: unknown certificate authority":  {},
	"tls: access denied":                  {},
	"tls: certificate required":           {},
	"tls: protocol version not supported": {},
	"tls: insufficient security level":    {},
	"tls: handshake failure":              {},
}

// wrapFinal wraps the last attempt's error for the caller.
func wrapFinal(method, path string, attempts int, err error) error {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	var ne *netError
	if errors.As(err, &ne) {
		switch {
		case retryable(err):
			return tacerr.Wrap(tacerr.Unavailable, ne.err, "%s %s failed after %d attempt(s)", method, path, attempts)
		case refusedByServer(err):
			return tacerr.Wrap(tacerr.Unauthorized, ne.err, "%s %s: the server refused this station's certificate or TLS settings", method, path)
		}
		return tacerr.Wrap(tacerr.InvalidConfig, ne.err, "%s %s: the server's certificate does not verify against ca_file", method, path)
	}
	return err
}
