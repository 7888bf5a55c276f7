package console_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/tacline/tacline/imei"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// The HTTP tests: one real server (SoftHSM2 token, SQLite ledger, mutual
// TLS) per test, reached with the environment's role certificates over
// HTTPS, without a browser: they send what a browser would not (or an
// older one would), which is what a console's checks must hold against.

// liveServer is a running server of a fresh development environment.
type liveServer struct {
	env *devenv.Env
	srv *server.Server
	url string
}

// startServer sets up an environment with one station and serves it in
// this process until the test ends; configure, if given, changes the
// environment's configuration first.
func startServer(t *testing.T, configure ...func(*devenv.Env)) *liveServer {
	t.Helper()
	return startServerLogging(t, slog.New(slog.DiscardHandler), configure...)
}

// startServerLogging is startServer with the server's log written to log.
func startServerLogging(t *testing.T, log *slog.Logger, configure ...func(*devenv.Env)) *liveServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range configure {
		f(env)
	}
	srv, u, stop, err := devenv.ServeInProcessLogging(ctx, env, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &liveServer{env: env, srv: srv, url: u}
}

// checkpoint signs an audit checkpoint now (exports and proofs need one).
func (s *liveServer) checkpoint(t *testing.T) {
	t.Helper()
	if _, err := s.srv.Audit.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// exportAudit sends the audit page's export form, with its token, as c and
// wants the redirect a made export answers.
func (s *liveServer) exportAudit(t *testing.T, c *http.Client) *http.Response {
	t.Helper()
	tok := csrfOf(t, c, s.url+"/console/audit")
	resp, body := multipartPost(t, c, s.url+"/console/audit/exports", [][2]string{{"csrf", tok}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the export form with its token: %s, want 303:\n%s", resp.Status, body)
	}
	return resp
}

// client is an HTTPS client with role's certificate that does not follow
// redirects (a 303 is what a form that changed something answers).
func (s *liveServer) client(t *testing.T, role string) *http.Client {
	t.Helper()
	c, err := devenv.RoleClient(s.env, role)
	if err != nil {
		t.Fatal(err)
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// do sends req and returns the answer with its body read.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, c, req)
}

// multipartPost posts fields (in order; a field named "file" is sent as a
// file part) as multipart/form-data.
func multipartPost(t *testing.T, c *http.Client, u string, fields [][2]string) (*http.Response, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range fields {
		var w io.Writer
		var err error
		if f[0] == "file" {
			w, err = mw.CreateFormFile("file", "register.txt")
		} else {
			w, err = mw.CreateFormField(f[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, f[1])
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, u, &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return do(t, c, req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the form token on the page at u, as role sees it.
func csrfOf(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, body := get(t, c, u)
	m := csrfField.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %s, no form token in the page:\n%s", u, resp.Status, body)
	}
	return m[1]
}

// TestMultipartFormNeedsCSRFToken: a form that is not the upload, sent as
// multipart/form-data without its token (a browser that sends neither
// Origin nor Sec-Fetch-Site, or a client that strips them), is refused and
// changes nothing; the same form with its token in a multipart body is
// accepted. Before, only the upload read its token from a multipart body
// and every other form was let through without one.
func TestMultipartFormNeedsCSRFToken(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	s.checkpoint(t)
	auditor := s.client(t, "auditor")

	resp, body := multipartPost(t, auditor, s.url+"/console/audit/exports", [][2]string{{"x", "y"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "security token is missing") {
		t.Errorf("an export form without its token, as multipart: %s, want 403 saying the token is missing:\n%s", resp.Status, body)
	}
	if _, body := get(t, auditor, s.url+"/console/audit"); strings.Contains(body, `id="exports"`) {
		t.Errorf("an export was made by a multipart form without a token:\n%s", body)
	}
	s.exportAudit(t, auditor) // with its token, as multipart

	// The revoke form: before, this revoked the device.
	devs, err := devenv.ProvisionDevices(ctx, s.env, s.url, 1, filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	d := devs[0]
	operator := s.client(t, "operator")
	resp, body = multipartPost(t, operator, s.url+"/console/revoke", [][2]string{{"serial", d.Serial}, {"reason", "stolen"}, {"confirm", "yes"}})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "security token is missing") {
		t.Errorf("a revoke form without its token, as multipart: %s, want 403 saying the token is missing:\n%s", resp.Status, body)
	}
	if st := deviceState(t, s.srv.DB, d.Serial); st != store.StateBound {
		t.Fatalf("device %s is %s after a multipart revoke form without a token, want BOUND", d.Serial, st)
	}
	tok := csrfOf(t, operator, s.url+"/console/revoke?serial="+d.Serial)
	resp, body = multipartPost(t, operator, s.url+"/console/revoke", [][2]string{{"csrf", tok}, {"serial", d.Serial}, {"reason", "stolen"}, {"confirm", "yes"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a revoke form with its token, as multipart: %s, want 303:\n%s", resp.Status, body)
	}
	if st := deviceState(t, s.srv.DB, d.Serial); st != store.StateRevoked {
		t.Fatalf("device %s is %s after its revoke form, want REVOKED", d.Serial, st)
	}
}

// TestDownloadsNotStored: a reconciliation's CSV and an audit export, the
// files the console hands out, are as private as its pages: they carry
// Cache-Control: no-store, so neither the browser's cache nor a proxy keeps
// a copy of the register's IMEIs or the audit log. Before, only rendered
// pages did.
func TestDownloadsNotStored(t *testing.T) {
	s := startServer(t)
	s.checkpoint(t)
	regulator := s.client(t, "regulator")
	tok := csrfOf(t, regulator, s.url+"/console/regulator")
	resp, body := multipartPost(t, regulator, s.url+"/console/regulator/runs", [][2]string{{"csrf", tok}, {"format", "lines"}, {"file", "352099001761481\n"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %s, want 303:\n%s", resp.Status, body)
	}
	auditor := s.client(t, "auditor")
	s.exportAudit(t, auditor)
	for _, f := range []struct {
		c *http.Client
		u string
	}{
		{regulator, "/console/regulator/runs/1/unknown_to_manufacturer.csv"},
		{auditor, "/console/audit/exports/1"},
	} {
		resp, body := get(t, f.c, s.url+f.u)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s:\n%s", f.u, resp.Status, body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("GET %s: Cache-Control %q, want no-store", f.u, cc)
		}
	}
	// Static files stay cacheable.
	if resp, _ := get(t, auditor, s.url+"/console/static/console.css"); resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") == "no-store" {
		t.Errorf("GET console.css: %s, Cache-Control %q; want 200, cacheable", resp.Status, resp.Header.Get("Cache-Control"))
	}
}

// TestAuditFlashNamesAKeptExport: the audit page's notice after an export
// names an export the console keeps, with its verdict; a link with any
// other text in ?export= shows no notice (nor does the reconciliation
// page's ?run= naming no kept run). Before, the page echoed whatever
// the link said into "Export ... written and verified", so a link could
// put a sentence of its own, or a verdict never reached, in a notice an
// auditor trusts.
func TestAuditFlashNamesAKeptExport(t *testing.T) {
	s := startServer(t)
	auditor := s.client(t, "auditor")
	for _, q := range []string{"1", "7 of the log proves tampering; call the number below", "-1"} {
		resp, body := get(t, auditor, s.url+"/console/audit?export="+url.QueryEscape(q))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /console/audit?export=%s: %s", q, resp.Status)
		}
		if strings.Contains(body, `class="flash"`) {
			t.Errorf("?export=%q names no kept export, yet the page shows a notice:\n%s", q, body)
		}
	}
	regulator := s.client(t, "regulator")
	if _, body := get(t, regulator, s.url+"/console/regulator?run=3"); strings.Contains(body, `class="flash"`) {
		t.Errorf("?run=3 names no kept run, yet the page shows a notice:\n%s", body)
	}
	s.checkpoint(t)
	loc := s.exportAudit(t, auditor).Header.Get("Location")
	if _, body := get(t, auditor, s.url+loc); !strings.Contains(body, "Export 1 written and verified: valid.") {
		t.Errorf("GET %s does not say export 1 was written and verified valid:\n%s", loc, body)
	}
}

// TestSearchNoticeFollowsTheLedger: the search's "revoked" and "voided"
// notices (where the void and revoke forms lead) show only when the
// device or its IMEIs are in that state; a link with ?done= to a BOUND
// device shows none. Before, ?done=revoked told an operator that a device
// still in service had been revoked.
func TestSearchNoticeFollowsTheLedger(t *testing.T) {
	s := startServer(t)
	devs, err := devenv.ProvisionDevices(context.Background(), s.env, s.url, 2, filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	operator := s.client(t, "operator")
	for _, done := range []string{"revoked", "voided"} {
		_, body := get(t, operator, s.url+"/console/search?done="+done+"&q="+url.QueryEscape(devs[0].Serial))
		if strings.Contains(body, `class="flash"`) {
			t.Errorf("?done=%s on a BOUND device shows a notice:\n%s", done, body)
		}
	}
	// Through the forms, each notice shows.
	for _, f := range []struct{ path, field, target, reason, want string }{
		{"/console/revoke", "serial", devs[0].Serial, "stolen", "The device was revoked."},
		{"/console/void", "imei", devs[1].IMEIs[0], "scrapped", "The IMEI and its device group were voided."},
	} {
		tok := csrfOf(t, operator, s.url+f.path+"?"+f.field+"="+url.QueryEscape(f.target))
		form := url.Values{"csrf": {tok}, f.field: {f.target}, "reason": {f.reason}, "confirm": {"yes"}}
		resp, body := do(t, operator, postForm(t, s.url+f.path, form))
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %s:\n%s", f.path, resp.Status, body)
		}
		if _, body := get(t, operator, s.url+resp.Header.Get("Location")); !strings.Contains(body, f.want) {
			t.Errorf("after POST %s the search does not say %q:\n%s", f.path, f.want, body)
		}
	}
}

func postForm(t *testing.T, u string, form url.Values) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

// TestSlowUploadOutlastsReadTimeout: a regulator's register file that
// takes longer to arrive than server.read_timeout and to reconcile than
// server.write_timeout (here 1 s and 2 s, the upload 3 s) is reconciled
// and answered: once its token is checked, the upload has an hour
// (uploadTimeout). Before, the connection's read deadline cut the
// file off ("read the uploaded file (at most 2 GiB)"), so the documented
// 2 GiB needed 200 MB/s with the default 10 s.
func TestSlowUploadOutlastsReadTimeout(t *testing.T) {
	s := startServer(t, func(env *devenv.Env) {
		env.Config.Server.ReadTimeout, env.Config.Server.WriteTimeout = time.Second, 2*time.Second
	})
	regulator := s.client(t, "regulator")
	tok := csrfOf(t, regulator, s.url+"/console/regulator")
	// slowly is a multipart form (token, format, file) whose file lines
	// arrive one every 500 ms.
	slowly := func(lines ...string) (io.Reader, string) {
		var head bytes.Buffer
		mw := multipart.NewWriter(&head)
		mw.WriteField("csrf", tok)
		mw.WriteField("format", "lines")
		mw.CreateFormFile("file", "register.txt")
		pr, pw := io.Pipe()
		go func() {
			pw.Write(head.Bytes())
			for _, l := range lines {
				time.Sleep(500 * time.Millisecond)
				pw.Write([]byte(l))
			}
			pw.Write([]byte("\r\n--" + mw.Boundary() + "--\r\n"))
			pw.Close()
		}()
		return pr, mw.FormDataContentType()
	}
	lines := []string{"352099001761481\n", "352099001761499\n", "352099001761507\n", "352099001761515\n", "352099001761523\n", "352099001761531\n"}
	for _, h2 := range []bool{false, true} { // browsers speak HTTP/2
		c := s.client(t, "regulator")
		c.Transport.(*http.Transport).ForceAttemptHTTP2 = h2
		body, ct := slowly(lines...)
		req, err := http.NewRequest(http.MethodPost, s.url+"/console/regulator/runs", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ct)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("a 3 s upload with a 1 s read timeout (HTTP/2 %v): %v", h2, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
			t.Fatalf("a 3 s upload with a 1 s read timeout: %s over %s, want 303 (HTTP/2 %v)", resp.Status, resp.Proto, h2)
		}
		_, page := get(t, c, s.url+resp.Header.Get("Location"))
		if !strings.Contains(page, "Register rows: 6;") {
			t.Fatalf("the slow upload's run does not count its 6 lines (HTTP/2 %v):\n%s", h2, page)
		}
	}
}

// TestSiteCertificateRefusalSaysWhy: a factory site's certificate
// (urn:tacline:site:, role site) is refused by the console with a page
// that names its roles and says which certificate to use. Before, it got
// "Station certificates cannot use the console: You connected with the
// certificate of station ." (no station: a site is not one).
func TestSiteCertificateRefusalSaysWhy(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	caCert, _, caSigner, err := castore.ActiveCA(ctx, s.srv.DB, s.srv.Token, store.IssuerStation)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.StationCert(caCert, caSigner, nil, ca.Station{Site: "plant-b"}, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c := s.client(t, "operator")
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw, caCert.Raw}, PrivateKey: key, Leaf: cert}}
	resp, body := get(t, c, s.url+"/console/")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a site certificate on the console: %s, want 403:\n%s", resp.Status, body)
	}
	for _, want := range []string{"This certificate cannot use the console", "roles site", "operator, auditor, regulator or admin certificate"} {
		if !strings.Contains(body, want) {
			t.Errorf("the refusal of a site certificate does not say %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "certificate of station") {
		t.Errorf("the refusal of a site certificate calls it a station's:\n%s", body)
	}
}

// TestSearchQueryCutOnACharacter: a search longer than the console reads (128 bytes)
// is cut on a character boundary, so the page echoes valid UTF-8 (before,
// the cut at 128 bytes split a multi-byte character in two).
func TestSearchQueryCutOnACharacter(t *testing.T) {
	s := startServer(t)
	q := strings.Repeat("1", 127) + "é"
	_, body := get(t, s.client(t, "operator"), s.url+"/console/search?q="+url.QueryEscape(q))
	if !utf8.ValidString(body) {
		t.Fatal("the search page is not valid UTF-8")
	}
	if !strings.Contains(body, strings.Repeat("1", 127)) {
		t.Fatalf("the page does not echo the query's first %d bytes:\n%s", 127, body)
	}
}

// TestDisabledPersonRefused: a person's role certificate that an operator
// disabled (`tacline station disable --person`, store.DisablePerson) is
// refused at its next request, on the console and on the API, and the
// refusal names the person; another person's certificate still works.
func TestDisabledPersonRefused(t *testing.T) {
	s := startServer(t)
	auditor, operator := s.client(t, "auditor"), s.client(t, "operator")
	if resp, body := get(t, auditor, s.url+"/console/audit"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the auditor before the disable: %s\n%s", resp.Status, body)
	}
	db, err := s.env.OpenLedger(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	serials, err := db.DisablePerson(context.Background(), "auditor", "test")
	if err != nil || len(serials) != 1 {
		t.Fatalf("disable the auditor: %v, %v", serials, err)
	}
	resp, body := get(t, auditor, s.url+"/console/audit")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "this certificate of auditor") || !strings.Contains(body, "was disabled") {
		t.Errorf("the disabled auditor's console page: %s\n%s", resp.Status, body)
	}
	if resp, body := get(t, auditor, s.url+"/metrics"); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "was disabled") {
		t.Errorf("the disabled auditor's /metrics: %s\n%s", resp.Status, body)
	}
	if resp, body := get(t, operator, s.url+"/console/search"); resp.StatusCode != http.StatusOK {
		t.Errorf("the operator after the auditor's disable: %s\n%s", resp.Status, body)
	}
	if _, err := db.DisablePerson(context.Background(), "auditor", "test"); tacerr.CodeOf(err) != tacerr.NotFound {
		t.Errorf("disabling the auditor again: %v, want not_found", err)
	}
}

// TestLegacyRoleCertificateDisabledBySerial: a role certificate enrolled
// before migration 0023 (subject "role auditor", no person, no row in
// people) is the station CA's word alone until an operator disables it by
// its serial (`tacline station disable --serial`, written as openssl
// prints it): then it is refused at its next request, on the console and
// the API, naming its serial. Disabling a person cannot reach it.
func TestLegacyRoleCertificateDisabledBySerial(t *testing.T) {
	s := startServer(t)
	ctx := context.Background()
	db, err := s.env.OpenLedger(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	caCert, _, signer, err := castore.ActiveCA(ctx, db, s.srv.Token, store.IssuerStation)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.StationCert(caCert, signer, nil, ca.Station{Roles: []string{"auditor"}}, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := castore.WriteKeyPair(filepath.Join(s.env.IdentitiesDir, "person-legacy"), append(castore.PEM(cert), castore.PEM(caCert)...), key); err != nil {
		t.Fatal(err)
	}
	legacy := s.client(t, "legacy")
	if resp, body := get(t, legacy, s.url+"/console/audit"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the legacy role certificate before the disable: %s\n%s", resp.Status, body)
	}
	if _, err := db.DisablePerson(ctx, "auditor", "test"); err != nil {
		t.Fatal(err)
	}
	if resp, body := get(t, legacy, s.url+"/console/audit"); resp.StatusCode != http.StatusOK {
		t.Fatalf("disabling a person reached the legacy certificate: %s\n%s", resp.Status, body)
	}
	var octets []string // as openssl x509 -serial prints it, with colons
	for _, b := range cert.SerialNumber.Bytes() {
		octets = append(octets, strings.ToUpper(hex.EncodeToString([]byte{b})))
	}
	pc, err := db.DisableRoleCertificate(ctx, strings.Join(octets, ":"), "test")
	if err != nil || pc.CertSerial != cert.SerialNumber.Text(16) || pc.Person != "" || pc.DisabledAt.IsZero() {
		t.Fatalf("disable by serial: %+v, %v", pc, err)
	}
	for _, path := range []string{"/console/audit", "/metrics"} {
		if resp, body := get(t, legacy, s.url+path); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "disabled by its serial") ||
			!strings.Contains(body, pc.CertSerial) {
			t.Errorf("the disabled legacy certificate on %s: %s\n%s", path, resp.Status, body)
		}
	}
	if resp, body := get(t, s.client(t, "operator"), s.url+"/console/search"); resp.StatusCode != http.StatusOK {
		t.Errorf("the operator after the disable: %s\n%s", resp.Status, body)
	}
}

// TestSlowDownloadOutlastsWriteTimeout: a run's file larger than the
// socket buffers, read by a client slower than server.write_timeout
// allows (here 1 s; the download takes about 3 s), arrives whole: once
// the staff member is authorised, a download has uploadTimeout. Before,
// the connection's write deadline cut it off part way.
func TestSlowDownloadOutlastsWriteTimeout(t *testing.T) {
	s := startServer(t, func(env *devenv.Env) {
		env.Config.Server.ReadTimeout, env.Config.Server.WriteTimeout = time.Second, time.Second
	})
	regulator := s.client(t, "regulator")
	tok := csrfOf(t, regulator, s.url+"/console/regulator")
	// 500,000 IMEIs under the environment's TAC, never allocated: each a
	// row of unknown_to_manufacturer.csv (about 19 MB)
	const n = 500000
	var file bytes.Buffer
	for snr := uint32(300000); snr < 300000+n; snr++ {
		m, _ := imei.New(devenv.FirstTAC, snr)
		file.WriteString(m.String() + "\n")
	}
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	mw.WriteField("csrf", tok)
	mw.WriteField("format", "lines")
	fw, _ := mw.CreateFormFile("file", "register.txt")
	fw.Write(file.Bytes())
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.url+"/console/regulator/runs", &form)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, body := do(t, regulator, req)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("upload: %s\n%s", resp.Status, body)
	}
	resp, err := regulator.Get(s.url + "/console/regulator/runs/1/unknown_to_manufacturer.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines, buf := 0, make([]byte, 256<<10)
	var rerr error
	for rerr == nil {
		var k int
		k, rerr = io.ReadFull(resp.Body, buf)
		if rerr == io.ErrUnexpectedEOF && k < len(buf) {
			rerr = io.EOF // the last, short chunk
		}
		lines += bytes.Count(buf[:k], []byte("\n"))
		time.Sleep(40 * time.Millisecond)
	}
	if !errors.Is(rerr, io.EOF) || lines != n+1 {
		t.Fatalf("a slow download: %d lines, then %v; want %d lines (header and rows) and EOF", lines, rerr, n+1)
	}
}

// TestRegulatorErrorShowsCodeNotCause: a reconciliation that fails, for
// the server's own reason (its run directory cannot be made; its output
// cannot be written, output_failed: it was invalid_input, which blamed the
// regulator's file and showed the server's path) or for the file's (no
// DIRBS header), shows the regulator the error's code, a
// message meant for them and a request id, never the server's paths or a
// Go error's text; the server log holds the error in full under that
// request id.
func TestRegulatorErrorShowsCodeNotCause(t *testing.T) {
	work := t.TempDir()
	// The server's log, a file: slog writes it one line at a time, the
	// test reads it between requests.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	s := startServerLogging(t, slog.New(slog.NewJSONHandler(logFile, nil)), func(env *devenv.Env) { env.Config.Console.WorkDir = work })
	// Run 1's output directory cannot be made: a file is in its place.
	if err := os.MkdirAll(filepath.Join(work, "reconcile", "1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "reconcile", "1", "out"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Run 3's output cannot be written: a category file's name is
	// /dev/full, where every write fails with ENOSPC.
	if err := os.MkdirAll(filepath.Join(work, "reconcile", "3", "out"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", filepath.Join(work, "reconcile", "3", "out", "missing_in_register.csv")); err != nil {
		t.Fatal(err)
	}
	regulator := s.client(t, "regulator")
	idRe := regexp.MustCompile(`request id ([0-9a-f]{16})`)
	for _, tc := range []struct {
		name, format, file string
		code               string
		text               string // what the page says about it
		detail             string // what only the log says
	}{
		{"internal", "lines", "352099001761481\n", "internal", "the cause is in its log", "not a directory"},
		{"the file's", "dirbs", "352099001761481\n", "invalid_input", "line 1 of register.txt is not a DIRBS header", "not a DIRBS header"},
		{"the output's", "lines", "352099001761481\n", "output_failed", "the cause is in its log", "no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := csrfOf(t, regulator, s.url+"/console/regulator")
			resp, body := multipartPost(t, regulator, s.url+"/console/regulator/runs", [][2]string{{"csrf", tok}, {"format", tc.format}, {"file", tc.file}})
			if resp.StatusCode == http.StatusSeeOther { // a run listed with its error
				_, body = get(t, regulator, s.url+resp.Header.Get("Location"))
			}
			if strings.Contains(body, work) || strings.Contains(body, os.TempDir()) || strings.Contains(body, "mkdir") {
				t.Fatalf("the page shows a server path or a Go error:\n%s", body)
			}
			m := idRe.FindStringSubmatch(body)
			if m == nil || !strings.Contains(body, "Error code "+tc.code) || !strings.Contains(body, tc.text) {
				t.Fatalf("the page does not show code %s, %q and a request id:\n%s", tc.code, tc.text, body)
			}
			logText, err := os.ReadFile(logFile.Name())
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for line := range strings.Lines(string(logText)) {
				if strings.Contains(line, `"request_id":"`+m[1]+`"`) && strings.Contains(line, `"code":"`+tc.code+`"`) && strings.Contains(line, tc.detail) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no log line with request id %s, code %s and %q:\n%s", m[1], tc.code, tc.detail, logText)
			}
		})
	}
}

// TestTranslationLacksKeyWarned: the server's start names the texts a
// translation (console.check_texts) leaves in English, so that a texts
// file written before a release added a text (error.reference.repeat) is
// noticed; TestUntranslated checks the list itself.
func TestTranslationLacksKeyWarned(t *testing.T) {
	old := filepath.Join(t.TempDir(), "de.yaml")
	if err := os.WriteFile(old, []byte("lang: de\ntexts:\n  check.title: IMEI prüfen\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The server's log, a file: its background work (the ledger's warm-up,
	// the console's error sweep) goes on logging while the test reads it.
	logPath := filepath.Join(t.TempDir(), "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logFile.Close() })
	startServerLogging(t, slog.New(slog.NewJSONHandler(logFile, nil)), func(env *devenv.Env) { env.Config.Console.CheckTexts = old })
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var warned bool
	for l := range strings.Lines(string(log)) {
		if !strings.HasSuffix(l, "\n") {
			break // a line still being written
		}
		var m struct {
			Level, Msg, Lang string
			Keys             []string
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(m.Msg, "translation leaves texts in English") {
			warned = m.Level == "WARN" && m.Lang == "de" && slices.Contains(m.Keys, "error.reference.repeat") && !slices.Contains(m.Keys, "check.title")
		}
	}
	if !warned {
		t.Fatalf("the server's start did not name the untranslated keys:\n%s", log)
	}
}

// TestCheckPageNamesTheLimit: the public check page says which limit
// refused a person, as the API's 429 does: their own network's (its IPv4
// /24) or the site's (all anonymous callers of the /16 together), and
// sends Retry-After with either. The rates are so low that nothing refills
// while the test runs.
func TestCheckPageNamesTheLimit(t *testing.T) {
	s := startServer(t, func(env *devenv.Env) {
		a := &env.Config.Authenticity.API
		a.LookupRate, a.LookupBurst, a.LookupSiteRate, a.LookupSiteBurst = 1e-4, 1, 1e-4, 2
	})
	pool, err := pemblock.CertPool(filepath.Join(s.env.CredsDir, castore.ServerCAFile), tacerr.Internal, "server_ca")
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := imei.New(35209900, 176148)
	ask := func(ip string) (*http.Response, string) {
		c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
			DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
		return get(t, c, s.url+"/check?imei="+unknown.String())
	}
	own, site := "Too many checks from your network", "Too many checks from the networks around yours"
	for _, step := range []struct {
		ip     string
		status int
		want   string
	}{
		{"127.0.1.1", 200, "Unknown"},
		{"127.0.1.2", 429, own},       // the /24's one token is spent
		{"127.0.2.1", 200, "Unknown"}, // another /24: the site's second token
		{"127.0.3.1", 429, site},      // a fresh /24, but the site's burst is spent
	} {
		resp, body := ask(step.ip)
		if resp.StatusCode != step.status || !strings.Contains(body, step.want) {
			t.Fatalf("/check from %s: %s, want %d and %q:\n%s", step.ip, resp.Status, step.status, step.want, body)
		}
		if step.status == 429 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("/check from %s: 429 without Retry-After", step.ip)
		}
		if step.want == own && strings.Contains(body, site) {
			t.Errorf("/check from %s names the site's limit for the caller's", step.ip)
		}
	}
}
