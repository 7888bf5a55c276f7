package api_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/verifytest"
)

// e2e is a real tacline server (devenv environment: SoftHSM2 token, SQLite
// ledger, key ceremony, stations) running in this process on a loopback
// port, with devices provisioned by the real line simulator over mTLS.
type e2e struct {
	env     *devenv.Env
	srv     *server.Server
	url     string
	devices []device
	chain   []byte // issuing CA + root, PEM
	clients map[string]*http.Client
}

type device struct {
	serial string
	imeis  []string
	cert   string // PEM
	key    *ecdsa.PrivateKey
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	ctx := context.Background()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: t.TempDir(), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	e := &e2e{env: env, srv: srv, url: url, clients: map[string]*http.Client{}}
	devs, err := devenv.ProvisionDevices(ctx, env, url, 4, t.TempDir())
	if err != nil || len(devs) != 4 {
		t.Fatalf("provision: %d devices, %v", len(devs), err)
	}
	for _, d := range devs {
		e.devices = append(e.devices, device{serial: d.Serial, imeis: d.IMEIs, cert: d.CertPEM, key: d.Key})
	}
	if e.chain, err = os.ReadFile(filepath.Join(env.ExportsDir, "ca-chain.pem")); err != nil {
		t.Fatal(err)
	}
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"regulator", "operator", "auditor"} {
		if e.clients[role], err = devenv.RoleClient(env, role); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(creds.ServerCAFile)
	pool.AppendCertsFromPEM(caPEM)
	e.clients["none"] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	st, err := tls.LoadX509KeyPair(creds.Stations[0].CertFile, creds.Stations[0].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	e.clients["station"] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{st}}}}
	// Every exchange is checked against api/openapi.yaml.
	for who, c := range e.clients {
		e.clients[who] = &http.Client{Timeout: c.Timeout, Transport: api.APIDoc.Transport(t, c.Transport)}
	}
	return e
}

type answer struct {
	status  int
	header  http.Header
	body    []byte
	problem wire.Problem
}

func (e *e2e) do(t *testing.T, who, method, path string, body any) answer {
	t.Helper()
	return do(t, e.clients[who], method, e.url+path, body)
}

func do(t *testing.T, c *http.Client, method, url string, body any) answer {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	a.body, _ = io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), wire.ProblemContentType) {
		_ = json.Unmarshal(a.body, &a.problem)
	}
	return a
}

// fromAddr returns a client like c (checked against the OpenAPI document)
// that connects from the local address ip.
func fromAddr(t *testing.T, c *http.Client, ip string) *http.Client {
	tr := c.Transport.(interface{ Unwrap() http.RoundTripper }).Unwrap().(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext
	return &http.Client{Timeout: c.Timeout, Transport: api.APIDoc.Transport(t, tr)}
}

// challenge asks for a nonce as who.
func (e *e2e) challenge(t *testing.T, who string) []byte {
	t.Helper()
	a := e.do(t, who, "POST", api.PathChallenges, nil)
	var ch online.Challenge
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &ch) != nil {
		t.Fatalf("challenge as %s: %d %s", who, a.status, a.body)
	}
	n, err := hex.DecodeString(ch.Nonce)
	if err != nil || len(n) != online.NonceBytes || !ch.ExpiresAt.After(time.Now()) {
		t.Fatalf("challenge %+v", ch)
	}
	return n
}

// request is device d's answer: claimed IMEI, its chain, signed with key.
func (e *e2e) request(t *testing.T, d device, imeiStr, chainPEM string, key *ecdsa.PrivateKey, nonce []byte) verify.Request {
	t.Helper()
	if chainPEM == "" {
		chainPEM = d.cert + string(e.chain)
	}
	return verify.Request{IMEI: imeiStr, Chain: chainPEM, Nonce: hex.EncodeToString(nonce), Signature: base64.StdEncoding.EncodeToString(verifytest.Sign(t, key, nonce))}
}

func (e *e2e) verify(t *testing.T, who string, req verify.Request) verify.Result {
	t.Helper()
	a := e.do(t, who, "POST", api.PathVerify, req)
	var res verify.Result
	if a.status != http.StatusOK || json.Unmarshal(a.body, &res) != nil {
		t.Fatalf("verify as %s: %d %s", who, a.status, a.body)
	}
	return res
}

// TestAuthenticityE2E: every verdict, nonce refusals, roles, revocation
// with CRL and OCSP checked by openssl, and the public lookup, against a
// real server.
func TestAuthenticityE2E(t *testing.T) {
	e := startE2E(t)
	dA, dB, dR := e.devices[0], e.devices[1], e.devices[2]

	t.Run("verdicts", func(t *testing.T) {
		certA, err := verify.ParseChainPEM([]byte(dA.cert))
		if err != nil {
			t.Fatal(err)
		}
		chains, err := verify.ParseChainPEM(e.chain)
		if err != nil {
			t.Fatal(err)
		}
		la := verifytest.NewLookAlike(t, chains[1], chains[0])
		fake := la.Copy(t, certA[0], &dA.key.PublicKey)
		for _, tc := range []struct {
			name, who string
			req       func(nonce []byte) verify.Request
			want      verify.Verdict
		}{
			{name: "genuine", who: "regulator", req: func(n []byte) verify.Request { return e.request(t, dA, dA.imeis[0], "", dA.key, n) }, want: verify.Genuine},
			{name: "genuine second IMEI as operator", who: "operator", req: func(n []byte) verify.Request { return e.request(t, dA, dA.imeis[1], "", dA.key, n) }, want: verify.Genuine},
			{name: "clone: IMEI and certificate copied, another key", who: "regulator", req: func(n []byte) verify.Request {
				return e.request(t, dA, dA.imeis[0], "", verifytest.NewKey(t), n)
			}, want: verify.Cloned},
			{name: "IMEI changed on device B to A's", who: "regulator", req: func(n []byte) verify.Request { return e.request(t, dB, dA.imeis[0], "", dB.key, n) }, want: verify.Tampered},
			{name: "look-alike CA", who: "regulator", req: func(n []byte) verify.Request {
				return e.request(t, dA, dA.imeis[0], string(ca.ChainPEM(fake...)), dA.key, n)
			}, want: verify.Counterfeit},
		} {
			t.Run(tc.name, func(t *testing.T) {
				res := e.verify(t, tc.who, tc.req(e.challenge(t, tc.who)))
				if res.Verdict != tc.want || len(res.Reasons) == 0 || res.IMEI == "" || res.CheckedAt.IsZero() {
					t.Fatalf("%+v, want %s", res, tc.want)
				}
			})
		}
	})

	t.Run("nonces", func(t *testing.T) {
		n := e.challenge(t, "regulator")
		req := e.request(t, dA, dA.imeis[0], "", dA.key, n)
		if res := e.verify(t, "regulator", req); res.Verdict != verify.Genuine {
			t.Fatalf("first use: %+v", res)
		}
		if a := e.do(t, "regulator", "POST", api.PathVerify, req); a.status != http.StatusConflict || a.problem.Field != "nonce" || !strings.Contains(a.problem.Detail, "replay") {
			t.Fatalf("replayed nonce: %d %+v", a.status, a.problem)
		}
		// An expired challenge, written to the shared ledger as another
		// replica would have.
		db, err := store.Open(context.Background(), e.env.Config.Database)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		old := verifytest.Nonce(t)
		if err := db.InsertChallenge(context.Background(), old, "test", time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if a := e.do(t, "regulator", "POST", api.PathVerify, e.request(t, dA, dA.imeis[0], "", dA.key, old)); a.status != http.StatusBadRequest || a.problem.Field != "nonce" || !strings.Contains(a.problem.Detail, "expired") {
			t.Fatalf("expired nonce: %d %+v", a.status, a.problem)
		}
		if a := e.do(t, "regulator", "POST", api.PathVerify, e.request(t, dA, dA.imeis[0], "", dA.key, verifytest.Nonce(t))); a.status != http.StatusBadRequest || a.problem.Field != "nonce" {
			t.Fatalf("unknown nonce: %d %+v", a.status, a.problem)
		}
		bad := e.request(t, dA, "12345", "", dA.key, e.challenge(t, "regulator"))
		if a := e.do(t, "regulator", "POST", api.PathVerify, bad); a.status != http.StatusBadRequest || a.problem.Field != "imei" {
			t.Fatalf("malformed IMEI: %d %+v", a.status, a.problem)
		}
	})

	t.Run("roles", func(t *testing.T) {
		for who, want := range map[string]int{"none": http.StatusUnauthorized, "station": http.StatusForbidden, "auditor": http.StatusForbidden} {
			for _, path := range []string{api.PathChallenges, api.PathVerify} {
				if a := e.do(t, who, "POST", path, verify.Request{}); a.status != want {
					t.Errorf("%s as %s: %d %s, want %d", path, who, a.status, a.body, want)
				}
			}
		}
	})

	t.Run("revocation", func(t *testing.T) {
		// A CRL published before the revocation: the publisher must notice
		// the revocation and publish a newer one on its own.
		before := e.fetchCRL(t)
		if len(before.RevokedCertificateEntries) != 0 {
			t.Fatalf("CRL before any revocation lists %d certificates", len(before.RevokedCertificateEntries))
		}
		if a := e.do(t, "operator", "POST", "/v1/devices/"+dR.serial+"/revoke", map[string]string{"reason": "stolen"}); a.status/100 != 2 {
			t.Fatalf("revoke: %d %s", a.status, a.body)
		}
		res := e.verify(t, "regulator", e.request(t, dR, dR.imeis[0], "", dR.key, e.challenge(t, "regulator")))
		if res.Verdict != verify.Revoked || !strings.Contains(strings.Join(res.Reasons, " "), "stolen") {
			t.Fatalf("revoked device: %+v", res)
		}
		after := testCRLAndOCSP(t, e, dA, dR)
		if after.Number.Cmp(before.Number) <= 0 {
			t.Fatalf("CRL number %v after the revocation, %v before", after.Number, before.Number)
		}
	})

	t.Run("lookup", func(t *testing.T) {
		for _, tc := range []struct{ name, imei, status string }{
			{"registered", dA.imeis[0], "registered"}, {"revoked", dR.imeis[1], "revoked"}, {"never allocated", "001001009999993", "unknown"},
		} {
			a := e.do(t, "none", "GET", "/v1/lookup/"+tc.imei, nil)
			var l map[string]any
			if a.status != 200 || json.Unmarshal(a.body, &l) != nil || l["status"] != tc.status {
				t.Fatalf("%s: %d %s", tc.name, a.status, a.body)
			}
			if _, ok := l["device_serial"]; ok || bytes.Contains(a.body, []byte(dA.serial)) || bytes.Contains(a.body, []byte(dR.serial)) {
				t.Fatalf("lookup leaks the device serial: %s", a.body)
			}
			if tc.status != "unknown" && (l["brand"] != devenv.Manufacturer || l["model"] == "") {
				t.Fatalf("%s: no brand/model: %s", tc.name, a.body)
			}
		}
		if a := e.do(t, "none", "GET", "/v1/lookup/not-an-imei", nil); a.status != 400 || a.problem.Field != "imei" {
			t.Fatalf("bad IMEI: %d %+v", a.status, a.problem)
		}
		// Burst over the per-address limit (20): 429 with Retry-After.
		var limited answer
		for range 30 {
			if a := e.do(t, "none", "GET", "/v1/lookup/"+dA.imeis[0], nil); a.status == http.StatusTooManyRequests {
				limited = a
				break
			}
		}
		ra, err := strconv.Atoi(limited.header.Get("Retry-After"))
		if limited.status != 429 || err != nil || ra < 1 || limited.problem.Code != "rate_limited" {
			t.Fatalf("burst: %d Retry-After %q %+v", limited.status, limited.header.Get("Retry-After"), limited.problem)
		}
		emptied := time.Now()
		// The bucket is the /24, not the address: other loopback addresses
		// get only what refilled since (5/s), not a burst each.
		admitted := 0
		for i := range 20 {
			c := fromAddr(t, e.clients["none"], fmt.Sprintf("127.0.0.%d", 7+i%2))
			if a := do(t, c, "GET", e.url+"/v1/lookup/"+dA.imeis[0], nil); a.status == 200 {
				admitted++
			}
		}
		if refill := int(math.Ceil(api.DefaultAuthenticityConfig().LookupRate*time.Since(emptied).Seconds())) + 1; admitted > refill {
			t.Fatalf("%d lookups from other addresses of the limited /24 admitted; at most %d tokens refilled", admitted, refill)
		}
		// An authenticated caller has its own bucket.
		if a := e.do(t, "regulator", "GET", "/v1/lookup/"+dA.imeis[0], nil); a.status != 200 {
			t.Fatalf("an authenticated lookup shares the anonymous bucket: %d %+v", a.status, a.problem)
		}
	})

	t.Run("public verify", func(t *testing.T) {
		// The same running components behind an API with public_verify on.
		cfg := api.DefaultAuthenticityConfig()
		cfg.PublicVerify = true
		pub := e.serveWith(t, cfg)
		n := pub.challenge(t, "none")
		if res := pub.verify(t, "none", pub.request(t, dA, dA.imeis[0], "", dA.key, n)); res.Verdict != verify.Genuine {
			t.Fatalf("public check: %+v", res)
		}
		var limited answer
		for range 10 {
			if a := pub.do(t, "none", "POST", api.PathChallenges, nil); a.status == http.StatusTooManyRequests {
				limited = a
				break
			}
		}
		if limited.status != 429 || limited.header.Get("Retry-After") == "" {
			t.Fatalf("public burst: %d %v", limited.status, limited.header)
		}
		// Regulators are not limited.
		for range 8 {
			pub.challenge(t, "regulator")
		}
	})

	t.Run("site limits", func(t *testing.T) { testSiteLimits(t, e) })
}

// serveWith serves e's running components behind an API with cfg, on a
// listener of its own, until the test ends.
func (e *e2e) serveWith(t *testing.T, cfg api.AuthenticityConfig) *e2e {
	t.Helper()
	p, err := api.WithAuthenticity(e.srv.Service, e.srv.Authority, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := api.New(e.env.Config.Server, p, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return &e2e{url: "https://" + ln.Addr().String(), chain: e.chain, clients: e.clients}
}

// limitDetail reads a 429's detail: the bucket and the limit.
var limitDetail = regexp.MustCompile(`^too many requests from (\S+): the per-(caller|site) limit`)

// testSiteLimits: anonymous callers of one site (IPv4 /16: the loopback
// addresses 127.0.x.y) share the site's allowance over their /24s, for
// public challenges (a ledger write each) and lookups alike, and the 429
// names the limit that refused; another site and an authenticated caller
// are not held by it. The rates are so low that nothing refills while the
// test runs.
func testSiteLimits(t *testing.T, e *e2e) {
	cfg := api.DefaultAuthenticityConfig()
	cfg.PublicVerify = true
	cfg.PublicRate, cfg.PublicBurst, cfg.PublicSiteRate, cfg.PublicSiteBurst = 1e-4, 2, 1e-4, 5
	cfg.LookupRate, cfg.LookupBurst, cfg.LookupSiteRate, cfg.LookupSiteBurst = 1e-4, 2, 1e-4, 5
	pub := e.serveWith(t, cfg)
	imei := e.devices[0].imeis[0]
	for _, route := range []struct{ name, method, path string }{
		{"challenges", "POST", api.PathChallenges},
		{"lookup", "GET", "/v1/lookup/" + imei},
	} {
		ask := func(ip string) answer {
			return do(t, fromAddr(t, pub.clients["none"], ip), route.method, pub.url+route.path, nil)
		}
		var got []string
		for _, ip := range []string{"127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.2.1", "127.0.2.2", "127.0.3.1", "127.0.4.1", "127.1.0.1"} {
			a := ask(ip)
			switch {
			case a.status < 300:
				got = append(got, ip+" ok")
			case a.status == http.StatusTooManyRequests && a.problem.Code == "rate_limited" && a.header.Get("Retry-After") != "":
				m := limitDetail.FindStringSubmatch(a.problem.Detail)
				if m == nil {
					t.Fatalf("%s from %s: 429 does not say which limit: %q", route.name, ip, a.problem.Detail)
				}
				got = append(got, ip+" "+m[2]+" "+m[1])
			default:
				t.Fatalf("%s from %s: %d %+v", route.name, ip, a.status, a.problem)
			}
		}
		want := []string{
			"127.0.1.1 ok", "127.0.1.2 ok", "127.0.1.3 caller net:127.0.1.0/24", // the /24's burst
			"127.0.2.1 ok", "127.0.2.2 ok", // another /24: its own burst
			"127.0.3.1 ok",                     // the site's fifth token
			"127.0.4.1 site site:127.0.0.0/16", // a fresh /24, but the site's burst is spent
			"127.1.0.1 ok",                     // another site
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", route.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if a := do(t, fromAddr(t, pub.clients["regulator"], "127.0.4.1"), route.method, pub.url+route.path, nil); a.status >= 300 {
			t.Errorf("%s: an authenticated caller is held by its address's site: %d %+v", route.name, a.status, a.problem)
		}
	}
}

// testCRLAndOCSP: the server's CRL lists the revoked device (after the
// debounced regeneration), openssl accepts the CRL and rejects the revoked
// certificate with -crl_check, and OCSP answers good and revoked.
func testCRLAndOCSP(t *testing.T, e *e2e, good, revoked device) *x509.RevocationList {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certs, err := verify.ParseChainPEM(e.chain)
	if err != nil {
		t.Fatal(err)
	}
	issuing := certs[0]
	revCert, err := verify.ParseChainPEM([]byte(revoked.cert))
	if err != nil {
		t.Fatal(err)
	}
	var crl *x509.RevocationList
	deadline := time.Now().Add(30 * time.Second)
	for {
		crl = e.fetchCRL(t)
		if len(crl.RevokedCertificateEntries) == 1 && crl.RevokedCertificateEntries[0].SerialNumber.Cmp(revCert[0].SerialNumber) == 0 {
			write("crl.der", crl.Raw)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRL never listed the revoked certificate: %d entries", len(crl.RevokedCertificateEntries))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if crl.Number.Sign() <= 0 || crl.RevokedCertificateEntries[0].ReasonCode != 1 || !crl.NextUpdate.After(crl.ThisUpdate) {
		t.Fatalf("CRL number %v, reason %d, %v..%v", crl.Number, crl.RevokedCertificateEntries[0].ReasonCode, crl.ThisUpdate, crl.NextUpdate)
	}
	if a := e.do(t, "none", "GET", "/v1/crl/ffff.crl", nil); a.status != 404 {
		t.Fatalf("unknown issuer CRL: %d", a.status)
	}
	chain := write("chain.pem", e.chain)
	openssl(t, true, "crl", "-inform", "DER", "-in", filepath.Join(dir, "crl.der"), "-CAfile", chain, "-noout")
	crlPEM := string(openssl(t, true, "crl", "-inform", "DER", "-in", filepath.Join(dir, "crl.der"), "-outform", "PEM"))
	root := write("root.pem", ca.ChainPEM(certs[1]))
	untrusted := write("issuing.pem", ca.ChainPEM(issuing))
	crlFile := write("crl.pem", []byte(crlPEM))
	out := openssl(t, false, "verify", "-crl_check", "-CRLfile", crlFile, "-CAfile", root, "-untrusted", untrusted, write("revoked.pem", []byte(revoked.cert)))
	if !strings.Contains(string(out), "certificate revoked") {
		t.Fatalf("openssl verify -crl_check on the revoked certificate: %s", out)
	}
	openssl(t, true, "verify", "-crl_check", "-CRLfile", crlFile, "-CAfile", root, "-untrusted", untrusted, write("good.pem", []byte(good.cert)))

	for _, tc := range []struct {
		name, cert, want string
	}{{"good", filepath.Join(dir, "good.pem"), ": good"}, {"revoked", filepath.Join(dir, "revoked.pem"), ": revoked"}} {
		reqFile := filepath.Join(dir, tc.name+"-req.der")
		openssl(t, true, "ocsp", "-issuer", untrusted, "-cert", tc.cert, "-no_nonce", "-reqout", reqFile)
		der, err := os.ReadFile(reqFile)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest("POST", e.url+api.PathOCSP, bytes.NewReader(der))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/ocsp-request")
		resp, err := e.clients["none"].Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/ocsp-response" {
			t.Fatalf("OCSP %s: %d %s", tc.name, resp.StatusCode, body)
		}
		respFile := write(tc.name+"-resp.der", body)
		out := string(openssl(t, true, "ocsp", "-respin", respFile, "-issuer", untrusted, "-cert", tc.cert, "-CAfile", chain, "-no_nonce"))
		if !strings.Contains(out, tc.want) || !strings.Contains(out, "Response verify OK") {
			t.Fatalf("openssl ocsp %s: %s", tc.name, out)
		}
	}
	// GET form of OCSP, and a malformed request.
	der, _ := os.ReadFile(filepath.Join(dir, "good-req.der"))
	if a := e.do(t, "none", "GET", "/v1/ocsp/"+strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(base64.StdEncoding.EncodeToString(der)), nil); a.status != 200 || len(a.body) < 100 {
		t.Fatalf("OCSP GET: %d %d bytes", a.status, len(a.body))
	}
	testOCSPGet(t, e, good)
	req, _ := http.NewRequest("POST", e.url+api.PathOCSP, strings.NewReader("garbage"))
	resp, err := e.clients["none"].Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(body, []byte{0x30, 0x03, 0x0A, 0x01, 0x01}) {
		t.Fatalf("malformed OCSP request: %x", body)
	}
	return crl
}

// fetchCRL gets the device issuer's current CRL from the server.
func (e *e2e) fetchCRL(t *testing.T) *x509.RevocationList {
	t.Helper()
	certs, err := verify.ParseChainPEM(e.chain)
	if err != nil {
		t.Fatal(err)
	}
	a := e.do(t, "none", "GET", "/v1/crl/"+ca.KeyID(certs[0])+".crl", nil)
	if a.status != 200 || a.header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET CRL: %d %s", a.status, a.body)
	}
	crl, err := x509.ParseRevocationList(a.body)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// openssl runs openssl; ok says whether it must succeed.
func openssl(t *testing.T, ok bool, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if ok && err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !ok && err == nil {
		t.Fatalf("openssl %s succeeded; want a failure\n%s", strings.Join(args, " "), out)
	}
	return out
}
