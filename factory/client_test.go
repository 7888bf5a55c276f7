package factory

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/tacerr"
)

// step is what the fault-injecting server does with one request.
type step struct {
	status      int
	problem     *wire.Problem
	text        string // non-problem body
	retryAfter  string
	drop        bool // read the request, then close the connection without answering
	hang        bool // wait until the client gives up
	contentType string
	// offContract: an answer api/openapi.yaml excludes (a proxy's page,
	// no answer at all), so the test server does not hold it to the
	// contract.
	offContract bool
}

// faultServer answers requests with steps in order, then with success; it
// records every request body it read.
type faultServer struct {
	mu     sync.Mutex
	steps  []step
	bodies []wire.ProvisionRequest
	paths  []string
}

func (f *faultServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	var req wire.ProvisionRequest
	_ = json.Unmarshal(body, &req)
	f.bodies = append(f.bodies, req)
	f.paths = append(f.paths, r.URL.EscapedPath())
	var s *step
	if len(f.steps) > 0 {
		s = &f.steps[0]
		f.steps = f.steps[1:]
	}
	f.mu.Unlock()
	switch {
	case s == nil && r.URL.Path == wire.PathProvision:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(wire.ProvisionResponse{DeviceSerial: req.DeviceSerial, IMEIs: []string{"001017000000010"}})
	case s == nil:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	case s.drop:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	case s.hang:
		<-r.Context().Done()
	default:
		if s.retryAfter != "" {
			w.Header().Set("Retry-After", s.retryAfter)
		}
		if s.problem != nil {
			w.Header().Set("Content-Type", wire.ProblemContentType)
			w.WriteHeader(s.status)
			_ = json.NewEncoder(w).Encode(s.problem)
			return
		}
		if s.contentType != "" {
			w.Header().Set("Content-Type", s.contentType)
		}
		w.WriteHeader(s.status)
		_, _ = io.WriteString(w, s.text)
	}
}

func prob(status int, code, field string, retryable bool) *wire.Problem {
	return &wire.Problem{Type: "https://tacline.dev/problems/" + code, Title: code, Status: status, Code: code, Field: field, Retryable: retryable, Detail: "detail of " + code}
}

func TestClientRetries(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	tests := []struct {
		name       string
		steps      []step
		maxRetries int
		timeout    time.Duration
		wantCalls  int
		wantStatus int    // 0: success
		wantCode   string // ErrorCode of the error
		wantWaits  []time.Duration
	}{
		{name: "503 retryable then success", steps: []step{{status: 503, problem: prob(503, "hsm_unavailable", "", true)}}, wantCalls: 2},
		{name: "400 never retried", steps: []step{{status: 400, problem: prob(400, "csr_invalid", "csr", false)}}, wantCalls: 1, wantStatus: 400, wantCode: "csr_invalid"},
		{name: "409 conflict never retried", steps: []step{{status: 409, problem: prob(409, "request_conflict", "request_id", false)}}, wantCalls: 1, wantStatus: 409, wantCode: "request_conflict"},
		{name: "403 never retried", steps: []step{{status: 403, problem: prob(403, "station_not_authorized", "pool", false)}}, wantCalls: 1, wantStatus: 403, wantCode: "station_not_authorized"},
		{name: "503 the problem says is final", steps: []step{{status: 503, problem: prob(503, "hsm_pin_incorrect", "", false)}}, wantCalls: 1, wantStatus: 503, wantCode: "hsm_pin_incorrect"},
		{name: "503 from a proxy without problem", steps: []step{{status: 503, text: "upstream down", offContract: true}}, wantCalls: 2},
		{name: "500 not retryable", steps: []step{{status: 500, problem: prob(500, "internal", "", false)}}, wantCalls: 1, wantStatus: 500, wantCode: "internal"},
		{name: "500 marked retryable", steps: []step{{status: 500, problem: prob(500, "unavailable", "", true)}}, wantCalls: 2},
		{name: "Retry-After seconds honoured", steps: []step{{status: 503, problem: prob(503, "unavailable", "", true), retryAfter: "3"}}, wantCalls: 2, wantWaits: []time.Duration{3 * time.Second}},
		{name: "429 with Retry-After", steps: []step{{status: 429, text: "slow down", retryAfter: "2", offContract: true}}, wantCalls: 2, wantWaits: []time.Duration{2 * time.Second}},
		{name: "502 from a proxy without problem", steps: []step{{status: 502, text: "<html>bad gateway</html>", contentType: "text/html", offContract: true}}, wantCalls: 2},
		{name: "404 plain text not retried", steps: []step{{status: 404, text: "404 page not found", offContract: true}}, wantCalls: 1, wantStatus: 404, wantCode: "http_404"},
		{name: "connection dropped after the server read the request", steps: []step{{drop: true}}, wantCalls: 2},
		{name: "attempt timeout then success", steps: []step{{hang: true, offContract: true}}, timeout: 300 * time.Millisecond, wantCalls: 2},
		{name: "retries exhausted", maxRetries: 2, steps: []step{
			{status: 503, problem: prob(503, "unavailable", "", true)},
			{status: 503, problem: prob(503, "unavailable", "", true)},
			{status: 503, problem: prob(503, "unavailable", "", true)},
			{status: 503, problem: prob(503, "unavailable", "", true)},
		}, wantCalls: 3, wantStatus: 503, wantCode: "unavailable"},
		{name: "drops exhausted", maxRetries: 1, steps: []step{{drop: true}, {drop: true}, {drop: true}}, wantCalls: 2, wantCode: "unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := &faultServer{steps: tc.steps}
			serve := pki.Serve
			for _, s := range tc.steps {
				if s.offContract {
					serve = pki.ServeOffContract
				}
			}
			srv := serve(t, fs)
			retries := 0
			c, waits := testClient(t, pki, srv, ClientConfig{MaxRetries: tc.maxRetries, Timeout: tc.timeout, OnRetry: func(int, error) { retries++ }})
			resp, err := c.Provision(context.Background(), wire.ProvisionRequest{DeviceSerial: "D1", Product: "widget", CSR: "csr"})
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if len(fs.bodies) != tc.wantCalls {
				t.Fatalf("server saw %d requests, want %d", len(fs.bodies), tc.wantCalls)
			}
			if retries != tc.wantCalls-1 {
				t.Errorf("OnRetry called %d times, want %d", retries, tc.wantCalls-1)
			}
			id := fs.bodies[0].RequestID
			if len(id) != 32 {
				t.Errorf("generated request id %q, want 32 hex digits", id)
			}
			for i, b := range fs.bodies {
				if b.RequestID != id || b.DeviceSerial != "D1" || b.CSR != "csr" {
					t.Errorf("request %d = %+v, want the same request id %s and body as the first", i, b, id)
				}
			}
			if tc.wantCode == "" {
				if err != nil || resp == nil || resp.DeviceSerial != "D1" {
					t.Fatalf("Provision = %+v, %v; want success", resp, err)
				}
			} else {
				if err == nil {
					t.Fatalf("Provision succeeded, want error %s", tc.wantCode)
				}
				if got := ErrorCode(err); got != tc.wantCode {
					t.Errorf("ErrorCode = %q, want %q (err %v)", got, tc.wantCode, err)
				}
				var ae *APIError
				if tc.wantStatus != 0 {
					if !errors.As(err, &ae) || ae.Status != tc.wantStatus {
						t.Fatalf("error %v is not an *APIError with status %d", err, tc.wantStatus)
					}
				} else if errors.As(err, &ae) {
					t.Errorf("network failure returned as APIError %v", ae)
				}
			}
			if len(*waits) != tc.wantCalls-1 {
				t.Errorf("waited %d times, want %d", len(*waits), tc.wantCalls-1)
			}
			for i, w := range *waits {
				if tc.wantWaits != nil {
					if w < tc.wantWaits[i] {
						t.Errorf("wait %d = %s, want at least Retry-After %s", i, w, tc.wantWaits[i])
					}
				} else if cap := c.policy.Cap(i + 1); w < 0 || w > cap {
					t.Errorf("wait %d = %s, want full jitter within [0, %s]", i, w, cap)
				}
			}
		})
	}
}

func TestClientProblemFields(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	p := prob(409, "device_already_provisioned", "device_serial", false)
	p.IMEIs = []string{"001017000000010", "001017000000028"}
	srv := pki.Serve(t, &faultServer{steps: []step{{status: 409, problem: p}}})
	c, _ := testClient(t, pki, srv, ClientConfig{})
	_, err := c.Provision(context.Background(), wire.ProvisionRequest{RequestID: "r1", DeviceSerial: "D1"})
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want *APIError", err)
	}
	if ae.Problem.Code != "device_already_provisioned" || ae.Problem.Field != "device_serial" || len(ae.Problem.IMEIs) != 2 || ae.Problem.Retryable {
		t.Errorf("problem = %+v", ae.Problem)
	}
	if !strings.Contains(err.Error(), "409 device_already_provisioned (device_serial)") {
		t.Errorf("message %q does not name status, code and field", err)
	}
}

func TestClientPaths(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	fs := &faultServer{}
	// The test is about the paths the client sends; the server answers
	// "{}" to every one, which the contract excludes.
	srv := pki.ServeOffContract(t, fs)
	c, _ := testClient(t, pki, srv, ClientConfig{})
	ctx := context.Background()
	calls := []struct {
		name string
		call func() error
		want string
	}{
		{"device serial escaped", func() error { _, err := c.Device(ctx, "a/b c"); return err }, "/v1/devices/a%2Fb%20c"},
		{"imei", func() error { _, err := c.IMEI(ctx, "001017000000010"); return err }, "/v1/imeis/001017000000010"},
		{"void", func() error {
			_, err := c.Void(ctx, "001017000000010", wire.VoidRequest{Reason: "scrapped"})
			return err
		}, "/v1/imeis/001017000000010/void"},
		{"reissue", func() error { _, err := c.Reissue(ctx, "D1", wire.ReissueRequest{CSR: "x"}); return err }, "/v1/devices/D1/reissue"},
		{"revoke", func() error { _, err := c.Revoke(ctx, "D1", wire.RevokeRequest{Reason: "stolen"}); return err }, "/v1/devices/D1/revoke"},
		{"pools", func() error { _, err := c.Pools(ctx); return err }, "/v1/pools"},
		{"allocate", func() error { _, err := c.Allocate(ctx, wire.AllocationRequest{Pool: "p", Count: 1}); return err }, "/v1/allocations"},
		{"bind", func() error { _, err := c.Bind(ctx, wire.BindRequest{DeviceSerial: "D1"}); return err }, "/v1/bind"},
	}
	for i, tc := range calls {
		if err := tc.call(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fs.mu.Lock()
		got := fs.paths[i]
		fs.mu.Unlock()
		if got != tc.want {
			t.Errorf("%s: path %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestClientTLSFailuresNotRetried(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	other := newPKI(t) // another root, another station CA
	fs := &faultServer{}
	srv := pki.Serve(t, fs)
	tests := []struct {
		name string
		cfg  ClientConfig
		want tacerr.Code
	}{
		{name: "server certificate from an untrusted CA", cfg: ClientConfig{CAFile: other.ServerCAFile}, want: tacerr.InvalidConfig},
		{name: "station certificate the server does not trust", cfg: ClientConfig{CertFile: other.CertFile, KeyFile: other.KeyFile}, want: tacerr.Unauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			retries := 0
			tc.cfg.OnRetry = func(int, error) { retries++ }
			c, _ := testClient(t, pki, srv, tc.cfg)
			_, err := c.Pools(context.Background())
			if err == nil {
				t.Fatal("request succeeded with the wrong credentials")
			}
			if tacerr.CodeOf(err) != tc.want || tacerr.IsRetryable(err) {
				t.Errorf("err = %v (code %s, retryable %v), want %s (not retryable)", err, tacerr.CodeOf(err), tacerr.IsRetryable(err), tc.want)
			}
			if retries != 0 {
				t.Errorf("retried %d times a TLS failure that cannot heal", retries)
			}
		})
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.paths) != 0 {
		t.Errorf("the handler saw %d requests from rejected clients", len(fs.paths))
	}
}

func TestClientContextCancelStopsRetries(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	srv := pki.Serve(t, &faultServer{steps: []step{{status: 503, problem: prob(503, "unavailable", "", true)}}})
	c, _ := testClient(t, pki, srv, ClientConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	c.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	_, err := c.Provision(ctx, wire.ProvisionRequest{DeviceSerial: "D1"})
	if !errors.Is(err, context.Canceled) || ErrorCode(err) != "canceled" {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestClientRealBackoffWaits(t *testing.T) {
	t.Parallel()
	// The real sleep and jitter, with small bounds: the retry happens.
	pki := newPKI(t)
	fs := &faultServer{steps: []step{{status: 503, problem: prob(503, "unavailable", "", true)}, {drop: true}}}
	srv := pki.Serve(t, fs)
	c, err := NewClient(ClientConfig{ServerURL: srv.URL, CertFile: pki.CertFile, KeyFile: pki.KeyFile, CAFile: pki.ServerCAFile, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Provision(context.Background(), wire.ProvisionRequest{RequestID: "fixed-id", DeviceSerial: "D1"}); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.bodies) != 3 || fs.bodies[2].RequestID != "fixed-id" {
		t.Fatalf("requests = %+v, want 3 with request id fixed-id", fs.bodies)
	}
}

func TestNewClientRefuses(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name  string
		cfg   ClientConfig
		field string
		msg   string
	}{
		{name: "no server", cfg: ClientConfig{CertFile: pki.CertFile, KeyFile: pki.KeyFile, CAFile: pki.ServerCAFile}, field: "server_url", msg: "required"},
		{name: "plain http", cfg: ClientConfig{ServerURL: "http://127.0.0.1:1", CertFile: pki.CertFile, KeyFile: pki.KeyFile, CAFile: pki.ServerCAFile}, field: "server_url", msg: "mutual TLS"},
		{name: "no cert", cfg: ClientConfig{ServerURL: "https://127.0.0.1:1", CAFile: pki.ServerCAFile}, field: "cert_file", msg: "required"},
		{name: "key of another cert", cfg: ClientConfig{ServerURL: "https://127.0.0.1:1", CertFile: pki.CertFile, KeyFile: newPKI(t).KeyFile, CAFile: pki.ServerCAFile}, field: "key_file", msg: "matching PEM pair"},
		{name: "no CA file", cfg: ClientConfig{ServerURL: "https://127.0.0.1:1", CertFile: pki.CertFile, KeyFile: pki.KeyFile}, field: "ca_file", msg: "required"},
		{name: "missing CA file", cfg: ClientConfig{ServerURL: "https://127.0.0.1:1", CertFile: pki.CertFile, KeyFile: pki.KeyFile, CAFile: missing}, field: "ca_file", msg: "cannot read"},
		{name: "CA file without certificates", cfg: ClientConfig{ServerURL: "https://127.0.0.1:1", CertFile: pki.CertFile, KeyFile: pki.KeyFile, CAFile: pki.KeyFile}, field: "ca_file", msg: "wrong PEM block type \"PRIVATE KEY\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewClient(tc.cfg)
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidInput || e.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want invalid_input field %q mentioning %q", err, tc.field, tc.msg)
			}
		})
	}
}

func TestClientRetryBudget(t *testing.T) {
	t.Parallel()
	// A server that stays unavailable: the client retries with the same
	// request id until the budget is spent (a fake clock advances by each
	// wait), then reports the last answer.
	pki := newPKI(t)
	steps := make([]step, 200)
	for i := range steps {
		steps[i] = step{status: 503, problem: prob(503, "unavailable", "", true), retryAfter: "1"}
	}
	fs := &faultServer{steps: steps}
	srv := pki.Serve(t, fs)
	c, waits := testClient(t, pki, srv, ClientConfig{RetryBudget: 30 * time.Second})
	clock := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return clock }
	c.sleep = func(ctx context.Context, d time.Duration) error {
		*waits = append(*waits, d)
		clock = clock.Add(d)
		return ctx.Err()
	}
	_, err := c.Provision(context.Background(), wire.ProvisionRequest{RequestID: "budget-1", DeviceSerial: "D1"})
	var ae *APIError
	if !errors.As(err, &ae) || ae.Problem.Code != "unavailable" {
		t.Fatalf("err = %v, want the last 503 unavailable", err)
	}
	var total time.Duration
	for _, w := range *waits {
		if w < time.Second {
			t.Errorf("wait %s is shorter than the server's Retry-After 1s", w)
		}
		total += w
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if total > 30*time.Second || total < 25*time.Second {
		t.Errorf("waited %s in all, want the 30s budget nearly spent and never exceeded", total)
	}
	if len(fs.bodies) != len(*waits)+1 || len(fs.bodies) < 8 {
		t.Fatalf("server saw %d requests after %d waits, want one more than waits and well above the old 8-retry cap", len(fs.bodies), len(*waits))
	}
	for i, b := range fs.bodies {
		if b.RequestID != "budget-1" {
			t.Fatalf("request %d has request id %q, want budget-1", i, b.RequestID)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"spaces", " 2 ", 2 * time.Second},
		{"huge capped", "99999999999999999999999", maxRetryAfter},
		{"negative ignored", "-3", 0},
		{"date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"past date", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	}
	for _, tc := range tests {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("%s: ParseRetryAfter(%q) = %s, want %s", tc.name, tc.in, got, tc.want)
		}
	}
}
