package api

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/tacerr"
)

const testCSR = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"

// matrixCall is one endpoint called with a valid request.
type matrixCall struct {
	name, method, path string
	body               any
	// allowed lists the roles that get 2xx; "any" means every
	// authenticated role, "public" no certificate at all.
	allowed []string
}

// matrixCalls is the role matrix of docs/api.md, written out independently
// of the routes table so that a wrong cell there fails here.
func matrixCalls(imeiStr string) []matrixCall {
	return []matrixCall{
		{"provision", "POST", "/v1/provision", map[string]any{"request_id": "r1", "device_serial": "SN1", "product": "widget", "csr": testCSR}, []string{"station"}},
		{"allocations", "POST", "/v1/allocations", map[string]any{"request_id": "r2", "pool": "p1", "count": 2}, []string{"station"}},
		{"bind", "POST", "/v1/bind", map[string]any{"request_id": "r3", "imeis": []string{imeiStr}, "device_serial": "SN2", "csr": testCSR}, []string{"station"}},
		{"void", "POST", "/v1/imeis/" + imeiStr + "/void", map[string]any{"reason": "scrapped"}, []string{"station", "operator", "admin"}},
		{"reissue", "POST", "/v1/devices/SN1/reissue", map[string]any{"request_id": "r4", "csr": testCSR}, []string{"station", "operator", "admin"}},
		{"revoke", "POST", "/v1/devices/SN1/revoke", map[string]any{"reason": "cloned"}, []string{"operator", "admin"}},
		{"device", "GET", "/v1/devices/SN1", nil, []string{"station", "operator", "auditor", "regulator", "admin"}},
		{"imei", "GET", "/v1/imeis/" + imeiStr, nil, []string{"station", "operator", "auditor", "regulator", "admin"}},
		{"pools", "GET", "/v1/pools", nil, []string{"station", "operator", "auditor", "regulator", "admin"}},
		{"openapi", "GET", "/v1/openapi.yaml", nil, []string{"any"}},
		{"metrics", "GET", "/metrics", nil, []string{"any"}},
		{"healthz", "GET", "/healthz", nil, []string{"public"}},
		{"readyz", "GET", "/readyz", nil, []string{"public"}},
	}
}

// TestRoleMatrix calls every endpoint as every role and without a
// certificate: allowed roles get 2xx, the others 403, no certificate 401
// (public endpoints answer everyone).
func TestRoleMatrix(t *testing.T) {
	pki := newPKI(t)
	fake := newFake(t, pki)
	fake.addStation("F1-L1-S01", false)
	ts := startServer(t, pki, fake, nil)
	clients := map[string]*http.Client{"none": ts.client(nil)}
	for _, role := range []string{"operator", "auditor", "regulator", "admin"} {
		c := pki.clientCert(t, ca.Station{Roles: []string{role}})
		clients[role] = ts.client(&c)
	}
	sc := pki.clientCert(t, ca.Station{ID: "F1-L1-S01", Factory: "F1", Line: "L1"})
	clients["station"] = ts.client(&sc)

	imeiStr := fake.imeis[0].String()
	for _, mc := range matrixCalls(imeiStr) {
		for _, who := range []string{"none", "station", "operator", "auditor", "regulator", "admin"} {
			t.Run(mc.name+"/"+who, func(t *testing.T) {
				r := ts.do(t, clients[who], mc.method, mc.path, mc.body)
				var want string
				switch {
				case slices.Contains(mc.allowed, "public"), who != "none" && (slices.Contains(mc.allowed, "any") || slices.Contains(mc.allowed, who)):
					want = "2xx"
				case who == "none":
					want = "401"
				default:
					want = "403"
				}
				got := "2xx"
				if r.status < 200 || r.status > 299 {
					got = strconv.Itoa(r.status)
				}
				if got != want {
					t.Fatalf("%s %s as %s: status %d, want %s; body %s", mc.method, mc.path, who, r.status, want, r.body)
				}
				if want != "2xx" {
					wantCode := map[string]string{"401": "unauthorized", "403": "forbidden"}[want]
					if r.problem.Code != wantCode || r.problem.Status != r.status {
						t.Fatalf("problem %+v, want code %s status %d", r.problem, wantCode, r.status)
					}
				}
			})
		}
	}
	// The actors the provisioner saw carry the right identities.
	fake.mu.Lock()
	defer fake.mu.Unlock()
	var sawStation, sawAdmin bool
	for _, a := range fake.actors {
		if a.Station == "F1-L1-S01" && a.ID == "F1-L1-S01" && slices.Equal(a.Roles, []provisioner.Role{provisioner.RoleStation}) {
			sawStation = true
		}
		if a.Station == "" && a.ID == "role admin" && slices.Equal(a.Roles, []provisioner.Role{provisioner.RoleAdmin}) {
			sawAdmin = true
		}
	}
	if !sawStation || !sawAdmin {
		t.Errorf("actors seen: %+v; want the station's and the admin's", fake.actors)
	}
}

// TestStationLifecycle: an unknown station is refused, a disabled station is
// refused on its next request, a replaced certificate is refused.
func TestStationLifecycle(t *testing.T) {
	pki := newPKI(t)
	fake := newFake(t, pki)
	ts := startServer(t, pki, fake, nil)
	cert := pki.clientCert(t, ca.Station{ID: "F2-L1-S09"})
	c := ts.client(&cert)

	if r := ts.do(t, c, "GET", "/v1/pools", nil); r.status != 401 || r.problem.Code != "unauthorized" {
		t.Fatalf("unknown station: %d %+v", r.status, r.problem)
	}
	fake.addStation("F2-L1-S09", false)
	if r := ts.do(t, c, "GET", "/v1/pools", nil); r.status != 200 {
		t.Fatalf("enrolled station: %d %s", r.status, r.body)
	}
	fake.addStation("F2-L1-S09", true)
	r := ts.do(t, c, "GET", "/v1/pools", nil)
	if r.status != 403 || r.problem.Code != "forbidden" || !strings.Contains(r.problem.Detail, "disabled") {
		t.Fatalf("disabled station: %d %+v", r.status, r.problem)
	}
	// Re-enrolled with a new certificate: the old one no longer works.
	fake.mu.Lock()
	fake.stations["F2-L1-S09"] = provisioner.Station{ID: "F2-L1-S09", CertSerial: "00:ff:01"}
	fake.mu.Unlock()
	r = ts.do(t, c, "GET", "/v1/pools", nil)
	if r.status != 401 || !strings.Contains(r.problem.Detail, "replaced") {
		t.Fatalf("replaced certificate: %d %+v", r.status, r.problem)
	}
	fake.mu.Lock()
	fake.stations["F2-L1-S09"] = provisioner.Station{ID: "F2-L1-S09", CertSerial: cert.Leaf.SerialNumber.Text(16)}
	fake.mu.Unlock()
	if r := ts.do(t, c, "GET", "/v1/pools", nil); r.status != 200 {
		t.Fatalf("current certificate: %d %s", r.status, r.body)
	}
}

// TestUntrustedClientCA: a certificate from a CA the server does not trust
// fails the TLS handshake; TLS 1.1 is refused; TLS 1.3 is negotiated.
func TestTLSHandshake(t *testing.T) {
	pki := newPKI(t)
	fake := newFake(t, pki)
	ts := startServer(t, pki, fake, nil)
	stranger := newPKI(t) // another root and station CA, not configured
	cert := stranger.clientCert(t, ca.Station{Roles: []string{"admin"}})
	if _, err := ts.client(&cert).Get(ts.url + "/v1/pools"); err == nil {
		t.Fatal("a certificate from an untrusted CA was accepted")
	}

	old := ts.client(nil)
	old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
	old.Transport.(*http.Transport).TLSClientConfig.MinVersion = tls.VersionTLS10
	if _, err := old.Get(ts.url + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}

	resp, err := ts.client(nil).Get(ts.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("healthz: status %d, TLS version %x; want 200 over TLS 1.3", resp.StatusCode, resp.TLS.Version)
	}
}

// TestMappedIdentities: certificates of the manufacturer CA get identities
// only from identity_map; their tacline URNs are ignored.
func TestMappedIdentities(t *testing.T) {
	pki := newPKI(t)
	fake := newFake(t, pki)
	fake.addStation("F3-L2-S01", false)
	ts := startServer(t, pki, fake, func(c *Config) {
		c.IdentityMap = []IdentityRule{
			{URI: "spiffe://acme.example/line2/station1", Station: "F3-L2-S01"},
			{CN: "qa-laptop-01", Roles: []string{"auditor"}},
			{DNS: "ops.acme.example", Roles: []string{"operator"}},
		}
	})
	tests := []struct {
		name       string
		tmpl       *x509.Certificate
		path       string
		wantStatus int
		wantActor  string
	}{
		{"uri station", &x509.Certificate{Subject: pkix.Name{CommonName: "s1"}, URIs: []*url.URL{mustURL(t, "spiffe://acme.example/line2/station1")}}, "/v1/pools", 200, "F3-L2-S01"},
		{"cn auditor", &x509.Certificate{Subject: pkix.Name{CommonName: "qa-laptop-01"}}, "/v1/pools", 200, "qa-laptop-01"},
		{"dns operator may not provision", &x509.Certificate{Subject: pkix.Name{CommonName: "ops"}, DNSNames: []string{"ops.acme.example"}}, "/v1/provision", 403, ""},
		{"tacline urn from mapped CA ignored", &x509.Certificate{Subject: pkix.Name{CommonName: "forged"}, URIs: []*url.URL{mustURL(t, ca.RoleURN("admin"))}}, "/v1/pools", 401, ""},
		{"unmapped", &x509.Certificate{Subject: pkix.Name{CommonName: "someone"}}, "/v1/pools", 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := pki.customClientCert(t, tc.tmpl)
			method, body := "GET", any(nil)
			if tc.path == "/v1/provision" {
				method, body = "POST", map[string]any{"request_id": "x", "device_serial": "d", "csr": testCSR}
			}
			r := ts.do(t, ts.client(&cert), method, tc.path, body)
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantActor != "" {
				fake.mu.Lock()
				got := fake.actors[len(fake.actors)-1].ID
				fake.mu.Unlock()
				if got != tc.wantActor {
					t.Fatalf("actor %q, want %q", got, tc.wantActor)
				}
			}
		})
	}
}

// TestIdentityErrors covers identities the server refuses.
func TestIdentityErrors(t *testing.T) {
	pki := newPKI(t)
	id := newIdentifier([]*x509.Certificate{pki.stationCA}, []IdentityRule{{CN: "two", Station: "OTHER"}})
	chain := func(c tls.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c.Leaf, pki.stationCA, pki.root}}}
	}
	tests := []struct {
		name string
		cs   *tls.ConnectionState
		want string
	}{
		{"no certificate", &tls.ConnectionState{}, "client certificate issued by a CA"},
		{"nil state (plain HTTP)", nil, "client certificate issued by a CA"},
		{"two stations", chain(pki.clientCert(t, ca.Station{ID: "ONE", Roles: []string{"operator"}})), ""},
		{"unknown role only", chain(pki.clientCert(t, ca.Station{Roles: []string{"janitor"}})), "carries no tacline identity"},
	}
	// The "two stations" certificate: CN is the station id ONE, and the
	// rule maps CN "two"; make it collide by mapping CN ONE instead.
	id.rules = []IdentityRule{{CN: "ONE", Station: "OTHER"}}
	tests[2].want = "names two stations"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := id.identify(tc.cs)
			if !tacerr.Is(err, tacerr.Unauthorized) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want unauthorized containing %q", err, tc.want)
			}
		})
	}
}
