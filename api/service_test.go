package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
)

// realServer serves the real provisioner.Service (SoftHSM2 token, CA,
// ledger on dialect d) over mTLS; station certificates come from the
// environment's station CA, whose key is in the HSM.
type realServer struct {
	*testServer
	env *provtest.Env
}

func startReal(t *testing.T, d store.Dialect, mutate ...func(*Config)) *realServer {
	t.Helper()
	return startRealEnv(t, provtest.New(t, d), mutate...)
}

// startRealEnv serves an environment built by the caller (for example with
// a fault-injecting signer).
func startRealEnv(t *testing.T, env *provtest.Env, mutate ...func(*Config)) *realServer {
	t.Helper()
	pki := newPKI(t) // the server's own certificate
	caFile := pki.write(t, "env-station-ca.pem", ca.ChainPEM(env.StationCA))
	ts := startServer(t, pki, env.Service, func(c *Config) {
		c.ClientCA = []string{caFile} // MappedCA stays: the test PKI's manufacturer CA
		for _, m := range mutate {
			m(c)
		}
	})
	return &realServer{testServer: ts, env: env}
}

// as returns a client with a station-CA certificate for st.
func (rs *realServer) as(t *testing.T, st ca.Station) *http.Client {
	t.Helper()
	cert, key, err := ca.StationCert(rs.env.StationCA, rs.env.StationKey, nil, st, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return rs.client(&tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
}

func (rs *realServer) provision(t *testing.T, c *http.Client, reqID, serial string) wire.ProvisionResponse {
	t.Helper()
	r := rs.do(t, c, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: reqID, DeviceSerial: serial, Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)})
	if r.status != http.StatusCreated {
		t.Fatalf("provision %s: %d %s", serial, r.status, r.body)
	}
	var out wire.ProvisionResponse
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRoleMatrixRealService is the role matrix against the real
// provisioner: every endpoint, every role and no certificate. Allowed
// calls carry valid requests and must succeed (2xx) end to end.
func TestRoleMatrixRealService(t *testing.T) {
	rs := startReal(t, store.SQLite)
	roles := []string{"station", "operator", "auditor", "regulator", "admin"}
	clients := map[string]*http.Client{"none": rs.client(nil), "station": rs.as(t, ca.Station{ID: "S1", Factory: "F1", Line: "L1"})}
	for _, r := range roles[1:] {
		clients[r] = rs.as(t, ca.Station{Roles: []string{r}})
	}
	s1 := clients["station"]

	// Devices and reservations the allowed calls act on.
	read := rs.provision(t, s1, "setup-read", "SN-READ")
	for _, r := range roles {
		rs.provision(t, s1, "setup-rev-"+r, "SN-REV-"+r)
	}
	r := rs.do(t, s1, "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: "setup-alloc", Pool: "F1-A", Count: len(roles) + 1})
	var alloc wire.AllocationResponse
	if err := json.Unmarshal(r.body, &alloc); err != nil || r.status != http.StatusCreated || len(alloc.Devices) != len(roles)+1 {
		t.Fatalf("allocate: %d %s", r.status, r.body)
	}

	type call struct {
		method, path string
		body         any
	}
	endpoints := []struct {
		name    string
		allowed string // space-separated roles; "any" or "public"
		call    func(who string, i int) call
	}{
		{"provision", "station", func(who string, i int) call {
			return call{"POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "m-prov-" + who, DeviceSerial: "SN-M-" + who, Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)}}
		}},
		{"allocations", "station", func(who string, i int) call {
			return call{"POST", wire.PathAllocations, wire.AllocationRequest{RequestID: "m-alloc-" + who, Pool: "F1-A", Count: 1}}
		}},
		{"bind", "station", func(who string, i int) call {
			return call{"POST", wire.PathBind, wire.BindRequest{RequestID: "m-bind-" + who, IMEIs: alloc.Devices[len(roles)], DeviceSerial: "SN-B-" + who, CSR: string(provtest.NewDevice(t).CSR)}}
		}},
		{"void", "station operator admin", func(who string, i int) call {
			return call{"POST", "/v1/imeis/" + alloc.Devices[i][0] + "/void", wire.VoidRequest{Reason: "test", Note: "role matrix"}}
		}},
		{"reissue", "station operator admin", func(who string, i int) call {
			return call{"POST", "/v1/devices/SN-READ/reissue", wire.ReissueRequest{RequestID: "m-reissue-" + who, CSR: string(provtest.NewDevice(t).CSR)}}
		}},
		{"revoke", "operator admin", func(who string, i int) call {
			return call{"POST", "/v1/devices/SN-REV-" + who + "/revoke", wire.RevokeRequest{Reason: "stolen"}}
		}},
		{"device", "station operator auditor regulator admin", func(string, int) call { return call{"GET", "/v1/devices/SN-READ", nil} }},
		{"imei", "station operator auditor regulator admin", func(string, int) call { return call{"GET", "/v1/imeis/" + read.IMEIs[0], nil} }},
		{"pools", "station operator auditor regulator admin", func(string, int) call { return call{"GET", wire.PathPools, nil} }},
		{"openapi", "any", func(string, int) call { return call{"GET", wire.PathOpenAPI, nil} }},
		{"metrics", "any", func(string, int) call { return call{"GET", wire.PathMetrics, nil} }},
		{"healthz", "public", func(string, int) call { return call{"GET", wire.PathHealthz, nil} }},
		{"readyz", "public", func(string, int) call { return call{"GET", wire.PathReadyz, nil} }},
	}
	for _, ep := range endpoints {
		for i, who := range append([]string{"none"}, roles...) {
			t.Run(ep.name+"/"+who, func(t *testing.T) {
				allowed := ep.allowed == "public" || who != "none" && (ep.allowed == "any" || strings.Contains(" "+ep.allowed+" ", " "+who+" "))
				c := ep.call(who, max(i-1, 0)) // "none" never reaches the provisioner
				r := rs.do(t, clients[who], c.method, c.path, c.body)
				switch {
				case allowed && (r.status < 200 || r.status > 299):
					t.Fatalf("%s %s as %s: %d, want 2xx: %s", c.method, c.path, who, r.status, r.body)
				case !allowed && who == "none" && (r.status != 401 || r.problem.Code != "unauthorized"):
					t.Fatalf("%s %s without a certificate: %d, want 401: %s", c.method, c.path, r.status, r.body)
				case !allowed && who != "none" && (r.status != 403 || r.problem.Code != "forbidden"):
					t.Fatalf("%s %s as %s: %d, want 403: %s", c.method, c.path, who, r.status, r.body)
				}
			})
		}
	}
}

// TestRealServiceBehaviour: replay, device_already_provisioned with IMEIs,
// key reuse counted, disabled station refused on its next request.
func TestRealServiceBehaviour(t *testing.T) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(d), func(t *testing.T) { testRealServiceBehaviour(t, d) })
	}
}

func testRealServiceBehaviour(t *testing.T, d store.Dialect) {
	rs := startReal(t, d)
	s1 := rs.as(t, ca.Station{ID: "S1"})
	dev := provtest.NewDevice(t)
	req := wire.ProvisionRequest{RequestID: "b-1", DeviceSerial: "SN-B1", Product: "EX-1", CSR: string(dev.CSR)}
	first := rs.do(t, s1, "POST", wire.PathProvision, req)
	again := rs.do(t, s1, "POST", wire.PathProvision, req)
	if first.status != 201 || again.status != 200 || string(first.body) != string(again.body) {
		t.Fatalf("replay: %d then %d\n%s\n%s", first.status, again.status, first.body, again.body)
	}
	var issued wire.ProvisionResponse
	if err := json.Unmarshal(first.body, &issued); err != nil || len(issued.IMEIs) != 2 || len(issued.IMEIs[0]) != 15 || !strings.Contains(issued.Chain, "BEGIN CERTIFICATE") {
		t.Fatalf("issued %+v %v", issued, err)
	}

	// The same device under a new request id: 409 with the existing IMEIs.
	r := rs.do(t, s1, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "b-2", DeviceSerial: "SN-B1", Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)})
	if r.status != 409 || r.problem.Code != "device_already_provisioned" || fmt.Sprint(r.problem.IMEIs) != fmt.Sprint(issued.IMEIs) {
		t.Fatalf("second provisioning: %d %+v, want 409 with IMEIs %v", r.status, r.problem, issued.IMEIs)
	}
	// Same request id, different body: request_conflict.
	r = rs.do(t, s1, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "b-1", DeviceSerial: "SN-OTHER", Product: "EX-1", CSR: string(dev.CSR)})
	if r.status != 409 || r.problem.Code != "request_conflict" {
		t.Fatalf("request id reuse: %d %+v", r.status, r.problem)
	}
	// The device's key on another device: key_reused, counted.
	r = rs.do(t, s1, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "b-3", DeviceSerial: "SN-B3", Product: "EX-1", CSR: string(dev.CSR)})
	if r.status != 409 || r.problem.Code != "key_reused" || r.problem.Field != "csr" {
		t.Fatalf("key reuse: %d %+v", r.status, r.problem)
	}
	m := rs.do(t, s1, "GET", wire.PathMetrics, nil)
	for _, want := range []string{"tacline_key_reuse_total 1\n", "tacline_hsm_sign_duration_seconds_count 1\n", `tacline_pool_remaining{pool="F1-A"} 499998` /* 500000 SNRs, one device of 2 IMEIs */} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("metrics lack %q:\n%s", want, m.body)
		}
	}
	// A pool the station may not use.
	r = rs.do(t, s1, "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: "b-4", Pool: "F2-B", Count: 1})
	if r.status != 403 || r.problem.Code != "station_not_authorized" {
		t.Fatalf("foreign pool: %d %+v", r.status, r.problem)
	}

	// Void answers the IMEI's record, revoke the device's.
	op := rs.as(t, ca.Station{Roles: []string{"operator"}})
	r = rs.do(t, s1, "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: "b-5", Pool: "F1-A", Count: 1})
	var al wire.AllocationResponse
	if err := json.Unmarshal(r.body, &al); err != nil || len(al.Devices) != 1 {
		t.Fatalf("allocate: %d %s", r.status, r.body)
	}
	r = rs.do(t, s1, "POST", "/v1/imeis/"+al.Devices[0][0]+"/void", wire.VoidRequest{Reason: "test"})
	var voided wire.IMEIStatus
	if err := json.Unmarshal(r.body, &voided); err != nil || r.status != 200 || voided.State != "VOIDED" || voided.IMEI != al.Devices[0][0] || voided.VoidedAt == nil {
		t.Fatalf("void: %d %s", r.status, r.body)
	}
	r = rs.do(t, op, "POST", "/v1/devices/SN-B1/revoke", wire.RevokeRequest{Reason: "stolen"})
	var revoked wire.DeviceStatus
	if err := json.Unmarshal(r.body, &revoked); err != nil || r.status != 200 || revoked.State != "REVOKED" || len(revoked.IMEIs) != 2 || revoked.IMEIs[0].State != "REVOKED" {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}

	// Disable the station: its next request is refused.
	if err := rs.env.DB.DisableStation(context.Background(), "S1", "test"); err != nil {
		t.Fatal(err)
	}
	r = rs.do(t, s1, "GET", wire.PathPools, nil)
	if r.status != 403 || r.problem.Code != "forbidden" {
		t.Fatalf("disabled station: %d %+v", r.status, r.problem)
	}
	// A station never enrolled.
	r = rs.do(t, rs.as(t, ca.Station{ID: "S99"}), "GET", wire.PathPools, nil)
	if r.status != 401 || r.problem.Code != "unauthorized" {
		t.Fatalf("unknown station: %d %+v", r.status, r.problem)
	}
}

// TestRealServiceIdentities: identities of the manufacturer CA come only
// from identity_map; a station's replaced certificate is refused.
func TestRealServiceIdentities(t *testing.T) {
	rs := startReal(t, store.SQLite, func(c *Config) {
		c.IdentityMap = []IdentityRule{
			{URI: "spiffe://acme.example/line1/s1", Station: "S1"},
			{CN: "qa-laptop-01", Roles: []string{"auditor"}},
			{DNS: "ops.acme.example", Roles: []string{"operator"}},
		}
	})
	pki := rs.pki
	tests := []struct {
		name       string
		tmpl       *x509.Certificate
		method     string
		path       string
		wantStatus int
	}{
		{"uri maps to station", &x509.Certificate{Subject: pkix.Name{CommonName: "s1"}, URIs: []*url.URL{mustURL(t, "spiffe://acme.example/line1/s1")}}, "GET", wire.PathPools, 200},
		{"cn maps to auditor", &x509.Certificate{Subject: pkix.Name{CommonName: "qa-laptop-01"}}, "GET", wire.PathPools, 200},
		{"dns operator may not provision", &x509.Certificate{Subject: pkix.Name{CommonName: "ops"}, DNSNames: []string{"ops.acme.example"}}, "POST", wire.PathProvision, 403},
		{"tacline URN from the mapped CA is ignored", &x509.Certificate{Subject: pkix.Name{CommonName: "forged"}, URIs: []*url.URL{mustURL(t, ca.RoleURN("admin")), mustURL(t, ca.StationURN("S1"))}}, "GET", wire.PathPools, 401},
		{"unmapped", &x509.Certificate{Subject: pkix.Name{CommonName: "someone"}}, "GET", wire.PathPools, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := pki.customClientCert(t, tc.tmpl)
			var body any
			if tc.method == "POST" {
				body = wire.ProvisionRequest{RequestID: "x", DeviceSerial: "d", Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)}
			}
			r := rs.do(t, rs.client(&cert), tc.method, tc.path, body)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
		})
	}

	// A station enrolled with its certificate's serial: that certificate
	// works, another certificate naming the same station does not.
	current := enrollS7(t, rs)
	if r := rs.do(t, current, "GET", wire.PathPools, nil); r.status != 200 {
		t.Fatalf("current certificate: %d %s", r.status, r.body)
	}
	r := rs.do(t, rs.as(t, ca.Station{ID: "S7"}), "GET", wire.PathPools, nil)
	if r.status != 401 || !strings.Contains(r.problem.Detail, "replaced") {
		t.Fatalf("replaced certificate: %d %+v", r.status, r.problem)
	}
}

// TestRoleMatrixCoversEveryRoute fails when a route is added without a row
// in the role matrix test above (or an entry saying where its access rule
// is tested).
func TestRoleMatrixCoversEveryRoute(t *testing.T) {
	inMatrix := map[string]bool{
		"POST " + wire.PathProvision: true, "POST " + wire.PathAllocations: true, "POST " + wire.PathBind: true,
		"POST " + wire.PathVoidIMEI: true, "POST " + wire.PathReissue: true, "POST " + wire.PathRevoke: true,
		"GET " + wire.PathDevice: true, "GET " + wire.PathIMEI: true, "GET " + wire.PathPools: true,
		"GET " + wire.PathOpenAPI: true, "GET " + wire.PathMetrics: true, "GET " + wire.PathHealthz: true, "GET " + wire.PathReadyz: true,
	}
	// The sites routes' rules (a site for itself only) are tested in
	// TestSitesAPI.
	for _, p := range []string{"POST " + wire.PathSiteLeases, "POST " + wire.PathSiteSync, "GET " + wire.PathSiteStatus} {
		inMatrix[p] = true
	}
	// Public routes whose handlers decide who may call them (api/verify.go,
	// authenticity checks); their rules are not part of the role table.
	handlerDecides := map[string]bool{
		"POST " + PathChallenges: true, "POST " + PathVerify: true, "GET " + PathLookup: true,
		"GET " + PathCRL: true, "POST " + PathOCSP: true, "GET " + PathOCSPGet: true,
	}
	for _, rt := range routes {
		switch {
		case inMatrix[rt.pattern]:
		case handlerDecides[rt.pattern] && rt.public:
		default:
			t.Errorf("route %s is not covered by TestRoleMatrixRealService", rt.pattern)
		}
	}
}
