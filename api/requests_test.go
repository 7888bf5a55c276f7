package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/tacerr/tacerrtest"
)

// stationServer is a server with one enrolled station and its client.
func stationServer(t *testing.T) (*testServer, *fakeProvisioner, *http.Client) {
	t.Helper()
	pki := newPKI(t)
	fake := newFake(t, pki)
	fake.addStation("F1-L1-S01", false)
	ts := startServer(t, pki, fake, nil)
	cert := pki.clientCert(t, ca.Station{ID: "F1-L1-S01", Roles: []string{"operator"}})
	return ts, fake, ts.client(&cert)
}

func TestDecodingErrors(t *testing.T) {
	ts, fake, c := stationServer(t)
	good := fake.imeis[0].String()
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        []byte
		wantStatus  int
		wantCode    string
		wantField   string
		wantDetail  string
	}{
		{"too large", "POST", "/v1/provision", "application/json", append(append([]byte(`{"csr":"`), bytes.Repeat([]byte("A"), wire.MaxBodyBytes)...), `"}`...), 413, "request_too_large", "", "65536"},
		{"unknown field", "POST", "/v1/provision", "application/json", []byte(`{"request_id":"r","devise_serial":"x"}`), 400, "invalid_input", "devise_serial", "unknown field"},
		{"wrong type", "POST", "/v1/provision", "application/json", []byte(`{"request_id":"r","imei_count":"two"}`), 400, "invalid_input", "imei_count", "must be a JSON integer, got a JSON string"},
		{"wrong type in list", "POST", "/v1/bind", "application/json", []byte(`{"request_id":"r","imeis":[1]}`), 400, "invalid_input", "imeis", "must be a JSON string"},
		{"trailing data", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r"} {"pool":"p"}`), 400, "invalid_input", "", "exactly one JSON object"},
		{"empty body", "POST", "/v1/allocations", "application/json", nil, 400, "invalid_input", "", "empty"},
		{"not JSON", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":}`), 400, "invalid_input", "", "byte 15"},
		{"truncated JSON", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r"`), 400, "invalid_input", "", "ends before"},
		{"array body", "POST", "/v1/allocations", "application/json", []byte(`[1,2]`), 400, "invalid_input", "", "must be a JSON object"},
		// A field twice: encoding/json keeps the last, so a proxy, a log or a
		// WAF reading the first sees another request than the ledger runs.
		{"field twice", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r","pool":"p1","count":1,"count":1000}`), 400, "invalid_input", "count", "more than once"},
		{"field twice, nested", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r","pool":"p1","count":1,"x":{"a":1,"a":2}}`), 400, "invalid_input", "a", "more than once"},
		// encoding/json matches names case-insensitively (and folds ſ to s,
		// K to k): such a name is not the API's field.
		{"field in other case", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r","pool":"p1","COUNT":1000}`), 400, "invalid_input", "COUNT", "unknown field"},
		{"field twice in other case", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r","pool":"p1","count":1,"Count":1000}`), 400, "invalid_input", "Count", "unknown field"},
		{"field with a folding letter", "POST", "/v1/allocations", "application/json", []byte(`{"request_id":"r","pool":"p1","count":1,"requeſt_id":"s"}`), 400, "invalid_input", "requeſt_id", "unknown field"},
		{"wrong media type", "POST", "/v1/allocations", "text/plain", []byte(`{}`), 415, "unsupported_media_type", "Content-Type", "application/json"},
		{"json with charset", "POST", "/v1/allocations", "application/json; charset=utf-8", []byte(`{"request_id":"r","pool":"p1","count":1}`), 201, "", "", ""},
		{"bad IMEI in path", "GET", "/v1/imeis/12345", "", nil, 400, "invalid_imei", "imei", "5 digits"},
		{"bad check digit in void path", "POST", "/v1/imeis/" + good[:14] + string('0'+(good[14]-'0'+1)%10) + "/void", "application/json", []byte(`{"reason":"test"}`), 400, "invalid_imei", "imei", "check digit"},
		{"bad IMEI in bind body", "POST", "/v1/bind", "application/json", []byte(`{"request_id":"r","imeis":["` + good + `","12x"],"device_serial":"d","csr":"` + base64.StdEncoding.EncodeToString([]byte{0x30, 0}) + `"}`), 400, "invalid_imei", "imeis[1]", "invalid character"},
		{"missing csr", "POST", "/v1/provision", "application/json", []byte(`{"request_id":"r","device_serial":"d"}`), 400, "csr_invalid", "csr", "required"},
		{"garbage csr", "POST", "/v1/provision", "application/json", []byte(`{"request_id":"r","device_serial":"d","csr":"not a csr!"}`), 400, "csr_invalid", "csr", "neither PEM"},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "not_found", "", "no API route"},
		{"wrong method", "GET", "/v1/provision", "", nil, 405, "invalid_input", "", "use POST"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.url+tc.path, bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			r := send(t, c, req)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantCode == "" {
				return
			}
			p := r.problem
			if p.Code != tc.wantCode || p.Field != tc.wantField || !strings.Contains(p.Detail, tc.wantDetail) || p.Status != tc.wantStatus {
				t.Fatalf("problem %+v, want code %s field %q detail containing %q", p, tc.wantCode, tc.wantField, tc.wantDetail)
			}
			if tc.wantStatus == 405 && r.header.Get("Allow") != "POST" {
				t.Fatalf("Allow %q, want POST", r.header.Get("Allow"))
			}
		})
	}
	// Nothing reached the provisioner but the one well-formed allocation.
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if !slices.Equal(fake.calls, []string{"Allocate"}) {
		t.Fatalf("provisioner calls %v, want [Allocate]", fake.calls)
	}
}

// TestChunkedBodyTooLarge: a body without Content-Length is cut at the limit.
func TestChunkedBodyTooLarge(t *testing.T) {
	ts, _, c := stationServer(t)
	body := io.MultiReader(strings.NewReader(`{"request_id":"`), strings.NewReader(strings.Repeat("x", 2*wire.MaxBodyBytes)), strings.NewReader(`"}`))
	req, err := http.NewRequest("POST", ts.url+"/v1/allocations", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r := send(t, c, req); r.status != 413 || r.problem.Code != "request_too_large" {
		t.Fatalf("status %d problem %+v, want 413 request_too_large", r.status, r.problem)
	}
}

func send(t testing.TB, c *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.Header.Get("Content-Type") == wire.ProblemContentType {
		if err := json.Unmarshal(data, &r.problem); err != nil {
			t.Fatalf("problem body %q: %v", data, err)
		}
	}
	return r
}

// existing is a provisioner error that carries a device's IMEIs.
type existing struct {
	err   error
	imeis []imei.IMEI
}

func (e existing) Error() string              { return e.err.Error() }
func (e existing) Unwrap() error              { return e.err }
func (e existing) ExistingIMEIs() []imei.IMEI { return e.imeis }

// TestEveryCodeThroughHTTP sends every code tacerr declares (read from its
// source, so a new code without its row fails here) through the server's
// error path and checks status, retryability and Retry-After against the
// table.
func TestEveryCodeThroughHTTP(t *testing.T) {
	ts, fake, c := stationServer(t)
	c = unchecked(c)
	provision := map[string]any{"request_id": "r1", "device_serial": "SN1", "product": "w", "csr": testCSR}
	for _, code := range tacerrtest.DeclaredCodes(t) {
		spec, ok := tacerr.Lookup(code)
		if !ok {
			t.Errorf("code %s is missing from tacerr's table: it would be answered as internal", code)
			continue
		}
		fake.setFail("Provision", tacerr.New(code, "message of %s", code))
		r := ts.do(t, c, "POST", "/v1/provision", provision)
		if r.status != spec.Status || r.problem.Code != string(code) || r.problem.Status != spec.Status || r.problem.Retryable != spec.Retryable {
			t.Errorf("%s: %d %+v, want status %d retryable %v", code, r.status, r.problem, spec.Status, spec.Retryable)
		}
		wantRA := ""
		if spec.Retryable {
			wantRA = strconv.Itoa(int(spec.RetryAfter / time.Second))
		}
		if got := r.header.Get("Retry-After"); got != wantRA {
			t.Errorf("%s: Retry-After %q, want %q (retryable %v)", code, got, wantRA, spec.Retryable)
		}
		if spec.Status == 401 || spec.Status == 403 {
			if spec.Retryable {
				t.Errorf("%s: an authorisation answer must not be retryable", code)
			}
		}
	}
}

func TestProblemMapping(t *testing.T) {
	ts, fake, c := stationServer(t)
	c = unchecked(c)
	provision := map[string]any{"request_id": "r1", "device_serial": "SN1", "product": "w", "csr": testCSR}
	other := imei.MustNew(101234, 99)
	tests := []struct {
		name           string
		err            error
		wantStatus     int
		wantCode       string
		wantRetryable  bool
		wantRetryAfter string
		wantDetail     string // "" : the generic detail of the status
		wantIMEIs      []string
	}{
		{"pool exhausted", tacerr.Field(tacerr.PoolExhausted, "pool", "pool p1 has 0 SNRs left"), 409, "pool_exhausted", false, "", "pool p1 has 0 SNRs left", nil},
		{"tac not approved", tacerr.New(tacerr.TACNotApproved, "TAC 00101234 has no approval for DE"), 422, "tac_not_approved", false, "", "no approval for DE", nil},
		{"station not authorized", tacerr.Field(tacerr.StationNotAuthorized, "pool", "station may not draw from p9"), 403, "station_not_authorized", false, "", "may not draw", nil},
		{"request conflict", tacerr.Field(tacerr.RequestConflict, "request_id", "r1 was used for another body"), 409, "request_conflict", false, "", "another body", nil},
		{"key reused", tacerr.Field(tacerr.KeyReused, "csr", "key bound to SN0"), 409, "key_reused", false, "", "bound to SN0", nil},
		{"lint failed", tacerr.New(tacerr.LintFailed, "e_sub_cert_key_usage_missing"), 500, "lint_failed", false, "", "e_sub_cert", nil},
		{"hsm unavailable", tacerr.Wrap(tacerr.HSMUnavailable, errors.New("CKR_DEVICE_REMOVED slot 3"), "sign"), 503, "hsm_unavailable", true, "1", "", nil},
		{"hsm pin locked", tacerr.New(tacerr.HSMPINLocked, "user PIN locked"), 503, "hsm_pin_locked", false, "", "needs an operator", nil},
		{"hsm pin refused", tacerr.New(tacerr.HSMPINIncorrect, "token refused the PIN"), 503, "hsm_pin_incorrect", false, "", "needs an operator", nil},
		{"database lost", tacerr.Wrap(tacerr.Unavailable, errors.New("secret-db-host: conn closed"), "look up station"), 503, "unavailable", true, "1", "", nil},
		{"rate limited with its own hint", tacerr.New(tacerr.RateLimited, "slow down").WithRetryAfter(7 * time.Second), 429, "rate_limited", true, "7", "slow down", nil},
		{"internal hides cause", tacerr.Wrap(tacerr.Internal, errors.New("secret-db-host:5432 refused"), "reserve"), 500, "internal", false, "", "", nil},
		{"plain error is internal", errors.New("secret-panic-detail"), 500, "internal", false, "", "", nil},
		{"code unknown to the table", tacerr.New(tacerr.Code("brand_new_code"), "secret-new-message"), 500, "brand_new_code", false, "", "", nil},
		{"already provisioned, IMEIs on the error", existing{tacerr.New(tacerr.DeviceAlreadyProvisioned, "SN1 was provisioned by r0"), []imei.IMEI{other}}, 409, "device_already_provisioned", false, "", "by r0", []string{other.String()}},
		{"already provisioned, IMEIs looked up", tacerr.New(tacerr.DeviceAlreadyProvisioned, "SN1 was provisioned by r0"), 409, "device_already_provisioned", false, "", "by r0", []string{fake.imeis[0].String(), fake.imeis[1].String()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake.setFail("Provision", tc.err)
			r := ts.do(t, c, "POST", "/v1/provision", provision)
			p := r.problem
			if r.status != tc.wantStatus || r.header.Get("Content-Type") != wire.ProblemContentType {
				t.Fatalf("status %d %q, want %d problem+json: %s", r.status, r.header.Get("Content-Type"), tc.wantStatus, r.body)
			}
			if p.Code != tc.wantCode || p.Status != tc.wantStatus || p.Retryable != tc.wantRetryable || p.Type != "https://tacline.dev/problems/"+tc.wantCode || p.Title == "" || p.Instance != "/v1/provision" {
				t.Fatalf("problem %+v", p)
			}
			if got := r.header.Get("Retry-After"); got != tc.wantRetryAfter {
				t.Fatalf("Retry-After %q, want %q", got, tc.wantRetryAfter)
			}
			wantDetail := tc.wantDetail
			if wantDetail == "" {
				wantDetail = genericDetail[tc.wantStatus]
			}
			if !strings.Contains(p.Detail, wantDetail) {
				t.Fatalf("detail %q, want %q", p.Detail, wantDetail)
			}
			if bytes.Contains(r.body, []byte("secret")) {
				t.Fatalf("the cause leaked: %s", r.body)
			}
			if !slices.Equal(p.IMEIs, tc.wantIMEIs) {
				t.Fatalf("imeis %v, want %v", p.IMEIs, tc.wantIMEIs)
			}
		})
	}
	// The causes of 5xx errors are in the log.
	if !strings.Contains(ts.logs.String(), "secret-db-host:5432 refused") {
		t.Error("the cause of an internal error is not logged")
	}
}

// TestRequestsReachProvisioner checks what the handlers hand over and what
// they answer.
func TestRequestsReachProvisioner(t *testing.T) {
	ts, fake, c := stationServer(t)
	der := []byte{0x30, 0x03, 0x02, 0x01, 0x01}

	r := ts.do(t, c, "POST", "/v1/provision", map[string]any{"request_id": "r1", "device_serial": "SN1", "pool": "p1", "imei_count": 2, "csr": base64.StdEncoding.EncodeToString(der)})
	if r.status != 201 {
		t.Fatalf("provision: %d %s", r.status, r.body)
	}
	in := fake.input("Provision").(provisioner.ProvisionInput)
	if in.RequestID != "r1" || in.DeviceSerial != "SN1" || in.Pool != "p1" || in.IMEICount != 2 || !bytes.Equal(in.CSR, der) || in.Actor.Station != "F1-L1-S01" {
		t.Fatalf("provision input %+v", in)
	}
	var pr wire.ProvisionResponse
	if err := json.Unmarshal(r.body, &pr); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(pr.Certificate))
	if block == nil || !bytes.Equal(block.Bytes, fake.cert.Raw) || pr.Chain != string(ca.ChainPEM(fake.cert)) || pr.CertificateSerial != "0a1b" || !pr.IssuedAt.Equal(time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)) {
		t.Fatalf("provision response %+v", pr)
	}
	if len(pr.IMEIs) != 2 || pr.IMEIs[0] != fake.imeis[0].String() || len(pr.IMEIs[0]) != 15 {
		t.Fatalf("imeis %v", pr.IMEIs)
	}

	// A replay answers 200 with the same body.
	fake.mu.Lock()
	fake.replayed = true
	fake.mu.Unlock()
	r2 := ts.do(t, c, "POST", "/v1/provision", map[string]any{"request_id": "r1", "device_serial": "SN1", "pool": "p1", "imei_count": 2, "csr": base64.StdEncoding.EncodeToString(der)})
	if r2.status != 200 || !bytes.Equal(r2.body, r.body) {
		t.Fatalf("replay: %d %s, want 200 and the first body", r2.status, r2.body)
	}

	// Bind: IMEIs in any accepted form (14 digits here), PEM CSR passed as is.
	r = ts.do(t, c, "POST", "/v1/bind", map[string]any{"request_id": "r2", "imeis": []string{fake.imeis[0].Digits14()}, "device_serial": "SN2", "csr": testCSR})
	bin := fake.input("Bind").(provisioner.BindInput)
	if r.status != 200 || len(bin.IMEIs) != 1 || bin.IMEIs[0] != fake.imeis[0] || string(bin.CSR) != testCSR {
		t.Fatalf("bind: %d, input %+v", r.status, bin)
	}

	// Void with the IMEI in the path, dashed form.
	m := fake.imeis[1].String()
	r = ts.do(t, c, "POST", "/v1/imeis/"+m[:2]+"-"+m[2:8]+"-"+m[8:14]+"-"+m[14:]+"/void", map[string]any{"reason": "rework", "note": "bent pin"})
	vin := fake.input("Void").(provisioner.VoidInput)
	var vst wire.IMEIStatus
	if err := json.Unmarshal(r.body, &vst); err != nil || vst.IMEI != m {
		t.Fatalf("void answer %s: %v", r.body, err)
	}
	if r.status != 200 || vin.IMEI != fake.imeis[1] || vin.Reason != "rework" || vin.Note != "bent pin" {
		t.Fatalf("void: %d, input %+v", r.status, vin)
	}

	// Revoke and reissue take the serial from the path.
	r = ts.do(t, c, "POST", "/v1/devices/SN%2F7/revoke", map[string]any{"reason": "stolen"})
	var rst wire.DeviceStatus
	if err := json.Unmarshal(r.body, &rst); err != nil || r.status != 200 || rst.DeviceSerial != "SN/7" {
		t.Fatalf("revoke: %d %s %v", r.status, r.body, err)
	}
	if rin := fake.input("Revoke").(provisioner.RevokeInput); rin.DeviceSerial != "SN/7" || rin.Reason != "stolen" {
		t.Fatalf("revoke input %+v", rin)
	}
	r = ts.do(t, c, "POST", "/v1/devices/SN3/reissue", map[string]any{"request_id": "r5", "csr": testCSR})
	if rin := fake.input("Reissue").(provisioner.ReissueInput); r.status != 200 || rin.DeviceSerial != "SN3" || rin.RequestID != "r5" {
		t.Fatalf("reissue: %d, input %+v", r.status, rin)
	}

	// Reads.
	r = ts.do(t, c, "GET", "/v1/devices/SN1", nil)
	var ds wire.DeviceStatus
	if err := json.Unmarshal(r.body, &ds); err != nil || r.status != 200 {
		t.Fatalf("device: %d %s %v", r.status, r.body, err)
	}
	if ds.DeviceSerial != "SN1" || ds.State != "BOUND" || len(ds.IMEIs) != 2 || ds.IMEIs[1].IMEI != fake.imeis[1].String() || ds.IMEIs[0].TAC != "00101234" || ds.IMEIs[0].BoundAt == nil || ds.IMEIs[0].VoidedAt != nil || ds.Pool != "p1" {
		t.Fatalf("device status %+v", ds)
	}
	r = ts.do(t, c, "GET", "/v1/pools", nil)
	var pl wire.PoolList
	if err := json.Unmarshal(r.body, &pl); err != nil || len(pl.Pools) != 1 || pl.Pools[0].TAC != "00101234" || pl.Pools[0].HighWaterMark != 19 || pl.Pools[0].Free != 981 {
		t.Fatalf("pools: %s %v", r.body, err)
	}
	r = ts.do(t, c, "GET", "/v1/allocations", nil)
	if r.status != 405 {
		t.Fatalf("GET allocations: %d", r.status)
	}
	// The access log names routes and request ids but carries no CSR.
	logs := ts.logs.String()
	if !strings.Contains(logs, `"route":"POST /v1/provision"`) || !strings.Contains(logs, `"request_id":"r2"`) {
		t.Errorf("access log lacks route or request id:\n%s", logs)
	}
	if strings.Contains(logs, "CERTIFICATE REQUEST") || strings.Contains(logs, base64.StdEncoding.EncodeToString(der)) {
		t.Errorf("access log carries a CSR:\n%s", logs)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	ts, fake, _ := stationServer(t)
	anon := ts.client(nil)
	if r := ts.do(t, anon, "GET", "/healthz", nil); r.status != 200 || !bytes.Contains(r.body, []byte(`"ok"`)) {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	if r := ts.do(t, anon, "GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}
	tests := []struct {
		name     string
		err      error
		wantCode string
	}{
		{"hsm down", tacerr.New(tacerr.HSMUnavailable, "token not present"), "hsm_unavailable"},
		{"database down", errors.New("dial tcp 127.0.0.1:5432: connection refused"), "unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake.mu.Lock()
			fake.ready = tc.err
			fake.mu.Unlock()
			r := ts.do(t, anon, "GET", "/readyz", nil)
			if r.status != 503 || r.problem.Code != tc.wantCode || r.header.Get("Retry-After") == "" || !r.problem.Retryable {
				t.Fatalf("readyz: %d %+v Retry-After %q", r.status, r.problem, r.header.Get("Retry-After"))
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	ts, fake, c := stationServer(t)
	ts.do(t, c, "POST", "/v1/allocations", map[string]any{"request_id": "r", "pool": "p1", "count": 1})
	fake.setFail("Provision", tacerr.New(tacerr.KeyReused, "key bound to SN0"))
	ts.do(t, c, "POST", "/v1/provision", map[string]any{"request_id": "r1", "device_serial": "SN1", "csr": testCSR})
	fake.observe(3 * time.Millisecond)
	if r := ts.do(t, ts.client(nil), "GET", "/metrics", nil); r.status != 401 {
		t.Fatalf("metrics without a certificate: %d", r.status)
	}
	auditor := ts.pki.clientCert(t, ca.Station{Roles: []string{"auditor"}})
	r := ts.do(t, ts.client(&auditor), "GET", "/metrics", nil)
	if r.status != 200 {
		t.Fatalf("metrics: %d %s", r.status, r.body)
	}
	for _, want := range []string{
		`tacline_http_requests_total{code="201",route="POST /v1/allocations"} 1`,
		`tacline_http_requests_total{code="409",route="POST /v1/provision"} 1`,
		`tacline_errors_total{code="key_reused"} 1`,
		`tacline_key_reuse_total 1`,
		`tacline_hsm_sign_duration_seconds_count 1`,
		`tacline_pool_remaining{pool="p1"} 981`,
		`tacline_http_request_duration_seconds_count{route="POST /v1/allocations"} 1`,
	} {
		if !bytes.Contains(r.body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// FuzzDecodeBody: whatever the body, decoding either succeeds or fails with
// a 4xx problem, never a panic or a 5xx.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"request_id":"r","device_serial":"d","csr":"x","imei_count":1}`,
		`{"request_id":1}`, `{"bogus":true}`, `[]`, `null`, `{} {}`, `{"imei_count":1e99}`,
		`{"request_id":"\u0000"}`, `{"csr":"` + strings.Repeat("A", 100) + `"`, ``, `"str"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := http.NewRequestWithContext(context.Background(), "POST", "/v1/provision", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		var v wire.ProvisionRequest
		err = decodeBody(nopWriter{}, req, &v)
		if err == nil {
			return
		}
		p, st := problemFor(err)
		if st.status < 400 || st.status > 499 || p.Code == "internal" {
			t.Fatalf("body %q: %v -> %d %s", body, err, st.status, p.Code)
		}
	})
}

// FuzzCSRBytes: a CSR field is either refused with csr_invalid or yields
// bytes.
func FuzzCSRBytes(f *testing.F) {
	for _, s := range []string{testCSR, "MAA=", "", "  ", "!!", "-----BEGIN", "TUFB\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := csrBytes(s)
		if err != nil && !tacerr.Is(err, tacerr.CSRInvalid) {
			t.Fatalf("%q: %v", s, err)
		}
		if err == nil && len(b) == 0 && strings.TrimSpace(s) != "" {
			// base64 of nothing is impossible for non-blank input except
			// padding-only strings, which StdEncoding refuses.
			t.Fatalf("%q: no bytes and no error", s)
		}
	})
}

type nopWriter struct{}

func (nopWriter) Header() http.Header         { return http.Header{} }
func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (nopWriter) WriteHeader(int)             {}

// FuzzCertPEM: certPEM writes exactly what encoding/pem writes.
func FuzzCertPEM(f *testing.F) {
	for _, n := range []int{1, 2, 3, 47, 48, 49, 96, 500, 1024} {
		f.Add(bytes.Repeat([]byte{0xa5}, n))
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		if len(der) == 0 {
			if certPEM(der) != "" {
				t.Fatal("empty DER gave PEM")
			}
			return
		}
		want := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
		if got := certPEM(der); got != want {
			t.Fatalf("certPEM(%x) =\n%s\nwant\n%s", der, got, want)
		}
	})
}

// TestAllocationLimitIsTheLedgers: the wire constant stations split
// pre-allocations by is the ledger's limit.
func TestAllocationLimitIsTheLedgers(t *testing.T) {
	if wire.MaxAllocationDevices != store.MaxDevicesPerReservation {
		t.Fatalf("wire.MaxAllocationDevices %d, store.MaxDevicesPerReservation %d", wire.MaxAllocationDevices, store.MaxDevicesPerReservation)
	}
}
