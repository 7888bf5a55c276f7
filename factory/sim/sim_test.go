package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/factorytest"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// lineServer stands in for the provisioning server (package api) in these
// tests: it parses CSRs with the server's own rules, hands out IMEIs from a
// pool, issues certificates with the real device profile, is idempotent by
// request id, and injects the faults a test asks for.
type lineServer struct {
	pki *testPKI
	t   testing.TB

	mu        sync.Mutex
	pool      wire.PoolStatus
	next      uint32
	byRequest map[string]*wire.ProvisionResponse
	attempts  map[string]int
	serials   map[string]string // device serial -> request id

	alloc prealloc // pre-allocation state and faults (prealloc_test.go)

	fail503First bool            // each request id's first attempt gets a retryable 503
	wrongKey     map[string]bool // device serials certified with another key
	exhaustAfter int             // devices after which the pool is exhausted (0: never)
}

func newLineServer(t testing.TB, pki *testPKI) *lineServer {
	return &lineServer{
		pki: pki, t: t,
		pool:      wire.PoolStatus{Name: "widget-pool", TAC: imei.FormatTAC(tacA), SNRStart: 100, SNREnd: 99_999, Product: "widget"},
		next:      100,
		byRequest: map[string]*wire.ProvisionResponse{},
		attempts:  map[string]int{},
		serials:   map[string]string{},
		wrongKey:  map[string]bool{},
	}
}

func problem(w http.ResponseWriter, status int, code, field string, retryable bool) {
	w.Header().Set("Content-Type", wire.ProblemContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.Problem{Status: status, Code: code, Field: field, Retryable: retryable, Title: code})
}

func (s *lineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case wire.PathPools:
		s.mu.Lock()
		list := wire.PoolList{Pools: []wire.PoolStatus{s.pool, {Name: "other", TAC: imei.FormatTAC(tacB), SNREnd: 10, Product: "gadget"}}}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	case wire.PathProvision:
		s.provision(w, r)
	case wire.PathAllocations:
		s.allocations(w, r)
	case wire.PathBind:
		s.bind(w, r)
	default:
		problem(w, 404, "not_found", "", false)
	}
}

func (s *lineServer) provision(w http.ResponseWriter, r *http.Request) {
	var req wire.ProvisionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, wire.MaxBodyBytes)).Decode(&req); err != nil {
		problem(w, 400, "invalid_input", "", false)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts[req.RequestID]++
	if s.fail503First && s.attempts[req.RequestID] == 1 {
		problem(w, 503, "hsm_unavailable", "", true)
		return
	}
	if resp, ok := s.byRequest[req.RequestID]; ok {
		writeJSON(w, resp)
		return
	}
	if req.Product != s.pool.Product {
		problem(w, 403, "station_not_authorized", "product", false)
		return
	}
	if s.exhaustAfter > 0 && len(s.byRequest) >= s.exhaustAfter {
		problem(w, 409, "pool_exhausted", "pool", false)
		return
	}
	s.issueIdentity(w, req.RequestID, req.DeviceSerial, req.CSR, func() []imei.IMEI { return s.take(max(req.IMEICount, 1)) })
}

// take hands out the next n IMEIs of the pool's TAC.
func (s *lineServer) take(n int) []imei.IMEI {
	var ims []imei.IMEI
	for range n {
		m, err := imei.New(tacA, s.next)
		if err != nil {
			s.t.Error(err)
		}
		s.next++
		ims = append(ims, m)
	}
	return ims
}

// issueIdentity checks the device and CSR, certifies the IMEIs ims returns
// and answers (s.mu held).
func (s *lineServer) issueIdentity(w http.ResponseWriter, requestID, serial, csr string, ims func() []imei.IMEI) {
	if prev, ok := s.serials[serial]; ok && prev != requestID {
		problem(w, 409, "device_already_provisioned", "device_serial", false)
		return
	}
	_, pub, err := policy.ParseCSR([]byte(csr), policy.DefaultCSRRules())
	if err != nil {
		problem(w, 400, "csr_invalid", "csr", false)
		return
	}
	if s.wrongKey[serial] {
		pub = factorytest.GenKey(s.t, pub.(*ecdsa.PublicKey).Curve).Public()
	}
	list := ims()
	cert := s.pki.Issue(s.t, serial, pub, list)
	resp := factorytest.RespFor(s.pki, serial, cert, list...)
	resp.IssuedAt = time.Now().UTC()
	s.byRequest[requestID] = resp
	s.serials[serial] = requestID
	writeJSON(w, resp)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func TestSimulate(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	ls := newLineServer(t, pki)
	ls.fail503First = true
	srv := pki.Serve(t, ls)
	creds := stations(t, pki, 3, "widget")
	var out bytes.Buffer
	keys := filepath.Join(t.TempDir(), "keys")
	sum, err := Simulate(context.Background(), Config{
		ServerURL: srv.URL, ServerCAFile: pki.ServerCAFile, RootsFile: pki.RootsFile,
		Stations: creds, Devices: 5, IMEICount: 2,
		DevicesOut: &out, KeysDir: keys, Progress: io.Discard,
		Client: ClientTuning{BaseBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("Simulate: %v (summary %+v)", err, sum)
	}
	if sum.Devices != 15 || sum.Failed != 0 || len(sum.ErrorsByCode) != 0 || sum.Stations != 3 {
		t.Errorf("summary = %+v, want 15 devices, no failure", sum)
	}
	if sum.Retries != 15 {
		t.Errorf("retries = %d, want 15 (one 503 per device)", sum.Retries)
	}
	if sum.P50ms <= 0 || sum.P99ms < sum.P50ms || sum.MaxMs < sum.P99ms || sum.DevicesPerSecond <= 0 || sum.ElapsedSeconds <= 0 {
		t.Errorf("latency figures inconsistent: %+v", sum)
	}
	ls.mu.Lock()
	if len(ls.byRequest) != 15 || len(ls.serials) != 15 {
		t.Errorf("server issued %d identities for %d serials, want 15 each", len(ls.byRequest), len(ls.serials))
	}
	for id, n := range ls.attempts {
		if n != 2 {
			t.Errorf("request %s sent %d times, want 2 (503 then the same id again)", id, n)
		}
	}
	ls.mu.Unlock()
	// The NDJSON records: one per device, with its own key on disk.
	seenIMEI := map[string]bool{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(nil, 1<<20)
	lines := 0
	for sc.Scan() {
		lines++
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if len(rec) != 3 {
			t.Errorf("record has fields %v, want device_serial, imeis, certificate", keysOf(rec))
		}
		var dr DeviceRecord
		_ = json.Unmarshal(sc.Bytes(), &dr)
		if len(dr.IMEIs) != 2 {
			t.Errorf("%s has %d IMEIs, want 2", dr.DeviceSerial, len(dr.IMEIs))
		}
		for _, m := range dr.IMEIs {
			if seenIMEI[m] || len(m) != 15 {
				t.Errorf("IMEI %q repeated or not 15 digits", m)
			}
			seenIMEI[m] = true
		}
		checkKeyFile(t, filepath.Join(keys, dr.DeviceSerial+".pem"), dr)
	}
	if lines != 15 {
		t.Errorf("%d NDJSON lines, want 15", lines)
	}
}

func keysOf(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// checkKeyFile: mode 0600, and the key answers a challenge that verifies
// with the certificate's key.
func checkKeyFile(t *testing.T, path string, dr DeviceRecord) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %o, want 600", path, st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	key, err := factory.ParseDeviceKey(data)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ca.ParseChainPEM([]byte(dr.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := factory.SignChallenge(key, []byte("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256([]byte("nonce"))
	if !ecdsa.VerifyASN1(certs[0].PublicKey.(*ecdsa.PublicKey), d[:], sig) {
		t.Errorf("the key written for %s does not match its certificate", dr.DeviceSerial)
	}
}

func TestSimulateFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(*lineServer, []factory.StationCreds)
		rate     float64
		want     tacerr.Code
		devices  int
		failed   map[string]int
		outLines int
	}{
		{
			name: "wrong key for one device",
			setup: func(ls *lineServer, creds []factory.StationCreds) {
				ls.wrongKey[serialPrefix(creds[1].ID, "run1", 1)+"000002"] = true
			},
			want: tacerr.VerificationFailed, devices: 7, failed: map[string]int{"verification_failed": 1}, outLines: 7,
		},
		{
			name:  "pool exhausted",
			setup: func(ls *lineServer, _ []factory.StationCreds) { ls.exhaustAfter = 5 },
			want:  tacerr.DevicesFailed, devices: 5, failed: map[string]int{"pool_exhausted": 3}, outLines: 5,
		},
		{
			name:  "IMEIs outside the station's pool",
			setup: func(ls *lineServer, _ []factory.StationCreds) { ls.next = 999_990 }, // the pool ends at 99,999; the server hands out beyond it
			want:  tacerr.VerificationFailed, devices: 0, failed: map[string]int{"verification_failed": 8},
		},
		{
			name: "paced run succeeds", rate: 400, devices: 8, outLines: 8,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pki := newPKI(t)
			ls := newLineServer(t, pki)
			creds := stations(t, pki, 2, "widget")
			if tc.setup != nil {
				tc.setup(ls, creds)
			}
			srv := pki.Serve(t, ls)
			var out bytes.Buffer
			sum, err := Simulate(context.Background(), Config{
				ServerURL: srv.URL, ServerCAFile: pki.ServerCAFile, RootsFile: pki.RootsFile,
				Stations: creds, Devices: 4, Rate: tc.rate, DevicesOut: &out, RunID: "run1",
			})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Simulate: %v", err)
				}
			} else if tacerr.CodeOf(err) != tc.want {
				t.Fatalf("err = %v, want code %s", err, tc.want)
			}
			if sum.Devices != tc.devices || sum.Failed != 8-tc.devices {
				t.Errorf("summary = %+v, want %d devices and %d failed", sum, tc.devices, 8-tc.devices)
			}
			for code, n := range tc.failed {
				if sum.ErrorsByCode[code] != n {
					t.Errorf("errors_by_code = %v, want %s: %d", sum.ErrorsByCode, code, n)
				}
			}
			if got := strings.Count(out.String(), "\n"); got != tc.outLines {
				t.Errorf("%d device records written, want %d (failed devices are not written)", got, tc.outLines)
			}
		})
	}
}

func TestSimulateRefuses(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	srv := pki.Serve(t, newLineServer(t, pki))
	gadget := stations(t, pki, 1, "gadget")
	widget := []factory.StationCreds{{ID: "S1", CertFile: pki.CertFile, KeyFile: pki.KeyFile, Product: "widget"}}
	tests := []struct {
		name  string
		cfg   Config
		code  tacerr.Code
		field string
	}{
		{name: "no stations", cfg: Config{Devices: 1}, code: tacerr.InvalidInput, field: "stations"},
		{name: "no devices", cfg: Config{Stations: widget}, code: tacerr.InvalidInput, field: "devices"},
		{name: "duration is a load run's", cfg: Config{Stations: widget, Devices: 1, Duration: time.Second}, code: tacerr.InvalidInput, field: "duration"},
		{name: "negative rate", cfg: Config{Stations: widget, Devices: 1, Rate: -1}, code: tacerr.InvalidInput, field: "rate"},
		{name: "six IMEIs", cfg: Config{Stations: widget, Devices: 1, IMEICount: 6}, code: tacerr.InvalidInput, field: "imei_count"},
		{name: "station without product", cfg: Config{Stations: []factory.StationCreds{{ID: "S"}}, Devices: 1}, code: tacerr.InvalidInput, field: "stations[0].product"},
		{name: "bad run id", cfg: Config{Stations: widget, Devices: 1, RunID: "a/b"}, code: tacerr.InvalidInput, field: "run_id"},
		{name: "no roots", cfg: Config{Stations: widget, Devices: 1, RootsFile: ""}, code: tacerr.InvalidInput, field: "roots_file"},
		{name: "no pool for the product", cfg: Config{Stations: []factory.StationCreds{{ID: "S", CertFile: gadget[0].CertFile, KeyFile: gadget[0].KeyFile, Product: "sprocket"}}, Devices: 1}, code: tacerr.StationNotAuthorized, field: "product"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg
			cfg.ServerURL, cfg.ServerCAFile = srv.URL, pki.ServerCAFile
			if tc.field != "roots_file" {
				cfg.RootsFile = pki.RootsFile
			}
			_, err := Simulate(context.Background(), cfg)
			e, ok := tacerr.As(err)
			if !ok || e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("err = %v, want %s on field %s", err, tc.code, tc.field)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		workers     int
		rate        float64
		pregenerate int
	}{
		{name: "closed loop, 4 stations on 2 identities", workers: 4},
		{name: "offered rate", workers: 3, rate: 200},
		{name: "pregenerated devices, then made during the run", workers: 3, pregenerate: 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pki := newPKI(t)
			ls := newLineServer(t, pki)
			srv := pki.Serve(t, ls)
			sum, err := Load(context.Background(), Config{
				ServerURL: srv.URL, ServerCAFile: pki.ServerCAFile, RootsFile: pki.RootsFile,
				Stations: stations(t, pki, 2, "widget"), Workers: tc.workers, Duration: 300 * time.Millisecond, Rate: tc.rate, Pregenerate: tc.pregenerate,
			})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if sum.Devices == 0 || sum.Failed != 0 || sum.Stations != tc.workers {
				t.Errorf("summary = %+v, want devices from %d stations and no failure", sum, tc.workers)
			}
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if len(ls.serials) != sum.Devices {
				t.Errorf("server saw %d device serials, summary counts %d devices", len(ls.serials), sum.Devices)
			}
		})
	}
	for _, bad := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"zero duration", Config{Stations: []factory.StationCreds{{ID: "S", Product: "p"}}}, "duration"},
		{"negative pregenerate", Config{Stations: []factory.StationCreds{{ID: "S", Product: "p"}}, Duration: time.Second, Pregenerate: -1}, "pregenerate"},
		{"negative workers", Config{Stations: []factory.StationCreds{{ID: "S", Product: "p"}}, Duration: time.Second, Workers: -1}, "workers"},
		{"devices is a simulation's", Config{Stations: []factory.StationCreds{{ID: "S", Product: "p"}}, Duration: time.Second, Devices: 3}, "devices"},
		{"pre-allocation is a simulation's", Config{Stations: []factory.StationCreds{{ID: "S", Product: "p"}}, Duration: time.Second, PreAllocate: true}, "pre_allocate"},
	} {
		if _, err := Load(context.Background(), bad.cfg); tacerr.CodeOf(err) != tacerr.InvalidInput || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("%s: err = %v, want invalid_input on %s", bad.name, err, bad.field)
		}
	}
}

func TestSerialPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, station string
		worker        int
	}{
		{"plain", "F1-L3-S07", 0},
		{"underscore and space cleaned", "F1_L3 S07", 12},
		{"long station cut", strings.Repeat("S", 80), 63},
	}
	for _, tc := range tests {
		p := serialPrefix(tc.station, "0123456789abcdef", tc.worker)
		serial := p + "000001"
		if err := policy.CheckDeviceSerial(serial); err != nil {
			t.Errorf("%s: serial %q: %v", tc.name, serial, err)
		}
		if !strings.HasSuffix(p, fmt.Sprintf("-0123456789abcdef-%d-", tc.worker)) {
			t.Errorf("%s: prefix %q lost the run id or worker", tc.name, p)
		}
	}
}

func TestSimulateInterrupted(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	ls := newLineServer(t, pki)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	n := 0
	srv := pki.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.ServeHTTP(w, r)
		if r.URL.Path == wire.PathProvision {
			mu.Lock()
			if n++; n == 3 {
				cancel() // the operator presses ^C
			}
			mu.Unlock()
		}
	}))
	progress, err := os.Create(filepath.Join(t.TempDir(), "progress"))
	if err != nil {
		t.Fatal(err)
	}
	defer progress.Close()
	sum, err := Simulate(ctx, Config{
		ServerURL: srv.URL, ServerCAFile: pki.ServerCAFile, RootsFile: pki.RootsFile,
		Stations: stations(t, pki, 1, "widget"), Devices: 50, Progress: progress,
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if sum.Devices < 2 || sum.Devices > 3 || sum.Failed != 0 {
		t.Errorf("summary = %+v, want the 2 or 3 devices answered before ^C and no failure", sum)
	}
	// Progress is a file, not a terminal: no progress bar in it.
	if st, err := progress.Stat(); err != nil || st.Size() != 0 {
		t.Errorf("progress file has %d bytes (%v), want none", st.Size(), err)
	}
}
