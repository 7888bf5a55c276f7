package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/ratelimit"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/online"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Gate is what the console needs from the API server (*api.Server): the
// caller's identity, read exactly as the API reads it, and the public
// lookup behind the API's rate limiter.
type Gate interface {
	Caller(r *http.Request) (provisioner.Actor, error)
	// Authorize gives a the scope the API's route table gives its roles
	// on the API route pattern whose use case the console is about to
	// run, or refuses it.
	Authorize(a provisioner.Actor, pattern string) (provisioner.Actor, error)
	PublicLookup(ctx context.Context, r *http.Request, m imei.IMEI) (online.Lookup, ratelimit.Refusal, error)
}

// Ops are the use cases the console calls (the provisioner the API
// serves, so that a revocation wakes the CRL publisher as through the API).
type Ops interface {
	Void(ctx context.Context, in provisioner.VoidInput) error
	Revoke(ctx context.Context, in provisioner.RevokeInput) error
	Device(ctx context.Context, a provisioner.Actor, serial string) (*provisioner.Device, error)
	IMEI(ctx context.Context, a provisioner.Actor, m imei.IMEI) (store.IMEIRecord, error)
	Pools(ctx context.Context, a provisioner.Actor) ([]store.PoolStats, error)
	PoolsRemaining(ctx context.Context) ([]store.PoolStats, error)
}

// IssuerState is what the server knows of its device issuers.
type IssuerState struct {
	Active   string           // key id new certificates are issued under
	Unusable map[string]error // key id -> why this server cannot sign with it (its code is shown)
}

// Config is what a console is built from.
type Config struct {
	Gate Gate
	Ops  Ops
	DB   *store.DB
	// LogKey is the audit log's verifier key: inclusion proofs and exports
	// are verified against it (empty when the audit log is disabled).
	LogKey string
	// Health probes the HSM (one signature); Issuers reports the device
	// issuers. Either may be nil.
	Health  func(ctx context.Context) hsm.Health
	Issuers func() IssuerState
	// Delivering says whether this server runs the register delivery
	// worker (register.url set); the overview says so when it does not.
	Delivering bool
	// Gatherer holds the server's metrics (errors by code, HSM signing
	// time).
	Gatherer prometheus.Gatherer
	// WorkDir keeps uploaded register files, reconciliation results and
	// audit exports; empty: a new temporary directory.
	WorkDir string
	// Refresh is how often live panels reload (default 5 s).
	Refresh time.Duration
	// Texts are the check page's texts (nil: English).
	Texts *Texts
	// CSRFKey makes the form tokens (console.csrf_key_file); empty: a
	// random key of this process.
	CSRFKey []byte
	Log     *slog.Logger
	Now     func() time.Time
}

// Console serves the staff console and the public check page.
type Console struct {
	cfg     Config
	pages   map[string]*template.Template
	texts   *Texts
	csrfKey []byte
	mux     *http.ServeMux
	static  http.Handler

	mu      sync.Mutex
	runs    []*reconRun
	exports []*auditExport
	runSeq  int    // reconciliation runs
	expSeq  int    // audit exports
	errs    errLog // which errors shown are logged
	health  cachedHealth
	seen    cachedLastSeen
	act     cachedActivity
	tempDir bool // WorkDir was made by New
}

// New builds a console.
func New(cfg Config) (*Console, error) {
	if cfg.Gate == nil || cfg.Ops == nil || cfg.DB == nil {
		return nil, tacerr.New(tacerr.Internal, "console.New: Gate, Ops and DB are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 5 * time.Second
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	made := false
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "tacline-console-")
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "make the console's work directory")
		}
		cfg.WorkDir, made = d, true
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o700); err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "make the console's work directory %s", cfg.WorkDir)
	}
	key, err := csrfKeyOf(cfg)
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, csrfKey: key, mux: http.NewServeMux(), tempDir: made}
	if c.texts = cfg.Texts; c.texts == nil {
		c.texts = English()
	}
	if en := c.texts.Untranslated(); len(en) > 0 {
		cfg.Log.Warn("console: the check page's translation leaves texts in English; add them to console.check_texts",
			"lang", c.texts.Lang, "keys", en)
	}
	if c.pages, err = parsePages(c.texts); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "embedded static files")
	}
	c.static = http.StripPrefix("/console/static/", http.FileServerFS(sub))
	c.routes()
	return c, nil
}

// Mount registers the console's paths (/console/, /check) on m, an
// *api.Server.
func (c *Console) Mount(m interface{ Mount(string, http.Handler) }) {
	m.Mount("/console/", c)
	m.Mount("/check", c)
}

// ServeHTTP serves the console and the check page with the security
// headers on every answer, and Cache-Control: no-store on every answer but
// the embedded static files.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send Origin: null on form posts
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	if !strings.HasPrefix(r.URL.Path, "/console/static/") {
		// Pages, downloads (reconciliation CSVs, audit exports), refusals
		// and redirects are the caller's own: no cache keeps them. The
		// embedded stylesheet, script and icon may be cached.
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// Close logs the repeats of errors left out of the log so far (Run) and
// deletes the work directory when New made it (an empty Config.WorkDir):
// reconciliation runs and exports are gone with it.
func (c *Console) Close() error {
	c.sweepErrors(context.Background(), true)
	if c.tempDir {
		return os.RemoveAll(c.cfg.WorkDir)
	}
	return nil
}

// csp allows scripts, styles and requests only from this origin: no inline
// script or style, no framing, forms post only here.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Role sets of the pages (admin is listed where it may act, as in the
// API's table).
var (
	staffRoles     = []provisioner.Role{provisioner.RoleOperator, provisioner.RoleAuditor, provisioner.RoleRegulator, provisioner.RoleAdmin}
	changeRoles    = []provisioner.Role{provisioner.RoleOperator, provisioner.RoleAdmin}
	regulatorRoles = []provisioner.Role{provisioner.RoleRegulator, provisioner.RoleAdmin}
	auditorRoles   = []provisioner.Role{provisioner.RoleAuditor, provisioner.RoleAdmin}
)

func (c *Console) routes() {
	m := c.mux
	m.Handle("GET /console/static/", c.static)
	m.HandleFunc("GET /check", c.check)
	m.Handle("GET /console/{$}", c.staff(staffRoles, c.overview))
	m.Handle("GET /console/search", c.staff(staffRoles, c.search))
	m.Handle("GET /console/void", c.staff(changeRoles, c.voidConfirm))
	m.Handle("POST /console/void", c.staff(changeRoles, c.voidDo))
	m.Handle("GET /console/revoke", c.staff(changeRoles, c.revokeConfirm))
	m.Handle("POST /console/revoke", c.staff(changeRoles, c.revokeDo))
	m.Handle("GET /console/regulator", c.staff(regulatorRoles, c.regulator))
	m.Handle("POST /console/regulator/runs", c.upload(regulatorRoles, c.reconcileUpload))
	m.Handle("GET /console/regulator/runs/{id}/{file}", c.staff(regulatorRoles, c.reconcileFile))
	m.Handle("GET /console/audit", c.staff(auditorRoles, c.auditor))
	m.Handle("POST /console/audit/exports", c.staff(auditorRoles, c.auditExport))
	m.Handle("GET /console/audit/exports/{id}", c.staff(auditorRoles, c.auditExportFile))
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.problem(w, r, nil, http.StatusNotFound, "Page not found", "There is no console page at "+r.URL.Path+".")
	})
}

// page is the data every staff page renders with.
type page struct {
	Title   string
	Lang    string // the page's language ("": en)
	Actor   provisioner.Actor
	Nav     []navItem
	CSRF    string
	Refresh int // seconds between live reloads
	Flash   string
	Data    any
	// requestID names the request in the server log when the page shows
	// an error (note).
	requestID string
}

type navItem struct {
	Href, Label string
	Current     bool
}

// staffHandler serves a page for an authenticated person.
type staffHandler func(w http.ResponseWriter, r *http.Request, p *page)

// staff authenticates the caller like the API, refuses stations and
// callers without one of roles with a page that says why, checks the CSRF
// token of a POST, and runs h.
func (c *Console) staff(roles []provisioner.Role, h staffHandler) http.Handler {
	return c.guard(roles, false, h)
}

// upload is staff for a form that uploads a file: the POST must be
// multipart/form-data, and h checks the token in the body's first part
// (so the file is streamed, not buffered) unless it came in X-CSRF-Token.
func (c *Console) upload(roles []provisioner.Role, h staffHandler) http.Handler {
	return c.guard(roles, true, h)
}

// guard is staff (upload false) or upload (upload true).
func (c *Console) guard(roles []provisioner.Role, upload bool, h staffHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := c.cfg.Gate.Caller(r)
		if err != nil {
			n := c.note(r, nil, err)
			d := problemData{Status: n.Status, Heading: n.Title, Text: n.Text, Note: &n}
			if tacerr.Is(err, tacerr.Unauthorized) {
				d.Heading = "A client certificate is needed"
				d.Text += " The console uses the same client certificates as the API: ask an administrator for an operator, auditor, regulator or admin certificate and import it into your browser. To check an IMEI, anyone can use /check."
			}
			c.problemPage(w, r, nil, d)
			return
		}
		p := &page{Actor: a, Nav: c.nav(a, r.URL.Path), Refresh: int(c.cfg.Refresh / time.Second), CSRF: c.csrfToken(r, a)}
		if !hasAny(a, staffRoles) && a.Station != "" {
			c.problem(w, r, p, http.StatusForbidden, "Station certificates cannot use the console",
				"You connected with the certificate of station "+a.Station+". The console is for people: use an operator, auditor, regulator or admin certificate. Stations use the API.")
			return
		}
		if !hasAny(a, staffRoles) { // a factory site's certificate
			c.problem(w, r, p, http.StatusForbidden, "This certificate cannot use the console",
				a.ID+" has roles "+roleList(a.Roles)+". The console is for people: use an operator, auditor, regulator or admin certificate.")
			return
		}
		if !hasAny(a, roles) {
			c.problem(w, r, p, http.StatusForbidden, "This page is not for your role",
				a.ID+" has roles "+roleList(a.Roles)+"; this page needs one of "+roleList(roles)+".")
			return
		}
		if r.Method == http.MethodPost {
			if reason := c.checkCSRF(r, a, upload); reason != "" {
				c.cfg.Log.Warn("console: refused a form without a valid CSRF token", "actor", a.ID, "path", r.URL.Path, "reason", reason)
				c.problem(w, r, p, http.StatusForbidden, "The form could not be accepted", reason+" Nothing was changed. Go back, reload the page and submit the form again.")
				return
			}
		}
		h(w, r, p)
	})
}

// as is the page's caller as the API would see it on route pattern (its
// scope from the API's route table), for the use case the page runs.
func (c *Console) as(p *page, pattern string) (provisioner.Actor, error) {
	return c.cfg.Gate.Authorize(p.Actor, pattern)
}

func hasAny(a provisioner.Actor, roles []provisioner.Role) bool { return a.HasAny(roles) }

func roleList(rs []provisioner.Role) string {
	if len(rs) == 0 {
		return "none"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// nav lists the pages a's roles may open.
func (c *Console) nav(a provisioner.Actor, path string) []navItem {
	items := []struct {
		href, label string
		roles       []provisioner.Role
	}{
		{"/console/", "Overview", staffRoles},
		{"/console/search", "Devices and IMEIs", staffRoles},
		{"/console/regulator", "Reconciliation", regulatorRoles},
		{"/console/audit", "Audit log", auditorRoles},
		{"/check", "Public IMEI check", nil},
	}
	var out []navItem
	for _, it := range items {
		if it.roles == nil || hasAny(a, it.roles) {
			out = append(out, navItem{Href: it.href, Label: it.label, Current: it.href == path})
		}
	}
	return out
}

// csrfKeyOf is the key a console makes its form tokens with: the
// configured one (shared by replicas) or a new random one.
func csrfKeyOf(cfg Config) ([]byte, error) {
	if len(cfg.CSRFKey) > 0 {
		return append([]byte(nil), cfg.CSRFKey...), nil
	}
	key := make([]byte, MinCSRFKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "make the CSRF key")
	}
	return key, nil
}

// csrfToken binds a form to the caller's certificate: an HMAC, under the
// console's key (console.csrf_key_file, shared by replicas, or a key of
// this process), of the actor and the certificate's hash. A page from
// another site cannot read it, and it is useless with another certificate.
func (c *Console) csrfToken(r *http.Request, a provisioner.Actor) string {
	mac := hmac.New(sha256.New, c.csrfKey)
	mac.Write([]byte("tacline console csrf\x00" + a.ID + "\x00"))
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		h := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		mac.Write(h[:])
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkCSRF returns why a POST is refused, or "" when its token is valid
// and it comes from this origin. Only an upload (a route made with
// Console.upload) may leave its token to the handler, which reads it from
// the multipart body's first part; any other form carries it in the
// X-CSRF-Token header or as its csrf field, URL-encoded or multipart.
func (c *Console) checkCSRF(r *http.Request, a provisioner.Actor, upload bool) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return "The form was sent from another site (" + site + ")."
	}
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			return "The form was sent from another origin (" + o + ")."
		}
	}
	got := r.Header.Get("X-CSRF-Token")
	if upload {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "multipart/form-data" {
			return "The upload was not sent as a multipart/form-data form (the page's upload form sends it so)."
		}
		if got == "" {
			return "" // checked in the first part by the handler
		}
	} else {
		r.Body = http.MaxBytesReader(nil, r.Body, maxFormBytes)
		if got == "" {
			got = r.PostFormValue("csrf")
		}
	}
	if got == "" {
		return "The form's security token is missing."
	}
	if !hmac.Equal([]byte(got), []byte(c.csrfToken(r, a))) {
		return "The form's security token is not valid for your certificate (or the server restarted)."
	}
	return ""
}

// maxFormBytes bounds a form that is not an upload.
const maxFormBytes = 64 << 10

// render writes page name with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p any) {
	t := c.pages[name]
	var buf bytes.Buffer
	tmpl := "layout"
	if r.URL.Query().Get("fragment") == "1" && t.Lookup("live") != nil {
		tmpl = "live"
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		c.cfg.Log.Error("console: render page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8") // Cache-Control: ServeHTTP
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// problemData is the error page.
type problemData struct {
	Status        int
	Heading, Text string
	Note          *errorNote // the error's code and request id (nil: a refusal, not an error)
}

// problem renders an error page (p nil: the caller is not known).
func (c *Console) problem(w http.ResponseWriter, r *http.Request, p *page, status int, heading, text string) {
	c.problemPage(w, r, p, problemData{Status: status, Heading: heading, Text: text})
}

func (c *Console) problemPage(w http.ResponseWriter, r *http.Request, p *page, d problemData) {
	if p == nil {
		p = &page{Nav: []navItem{{Href: "/check", Label: "Public IMEI check"}}}
	}
	p.Title = d.Heading
	p.Data = d
	c.render(w, r, d.Status, "problem", p)
}

// fail renders err as an error page (note).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, p *page, err error) {
	n := c.note(r, p, err)
	c.problemPage(w, r, p, problemData{Status: n.Status, Heading: n.Title, Text: n.Text, Note: &n})
}

// errorNote is an error as a page shows it: its stable code, the message
// the API would send for it (the error's own message only when tacerr's
// table lets the code's message out, never a wrapped cause: no file path,
// SQL or Go error text) and the request id under which the server log
// holds the error in full.
type errorNote struct {
	Status                       int
	Code, Title, Text, RequestID string
	// LoggedAs, when not empty, is the request id of the log line that
	// holds this same error (code and cause) in full: a repeat within a
	// minute of it is not logged again.
	LoggedAs string
}

// note is the one way an error reaches a page or a notice: it logs err in
// full with a request id (at error level when the status is 5xx, else
// warning) and returns what the page may show. The request id is the
// page's: every note of one request has the same. An error of the same
// code and cause as one logged less than a minute before is not logged
// again (a page refreshed every 5 s during an outage): its note names the
// request id of the line that was (LoggedAs), and the next line logged for
// it, a minute or more later, counts the repeats left out and names the
// last of them.
func (c *Console) note(r *http.Request, p *page, err error) errorNote {
	status, title, detail := api.PublicError(err)
	code := tacerr.CodeOf(err)
	if _, known := tacerr.Lookup(code); !known {
		code = tacerr.Internal // as PublicError describes it
	}
	n := errorNote{Status: status, Code: string(code), Title: title, Text: detail, RequestID: c.requestID(p)}
	e := errShown{code: n.Code, cause: err.Error(), level: slog.LevelWarn}
	if status >= 500 {
		e.level = slog.LevelError
	}
	d := c.errs.admit(e, n.RequestID, c.cfg.Now())
	c.logRepeats(r.Context(), d.closed)
	if !d.log {
		n.LoggedAs = d.loggedAs
		return n
	}
	actor := ""
	if p != nil {
		actor = p.Actor.ID
	}
	attrs := []any{"request_id", n.RequestID, "path", r.URL.Path, "actor", actor, "code", n.Code, "err", e.cause}
	if d.suppressed > 0 {
		attrs = append(attrs, "repeats_suppressed", d.suppressed, "last_suppressed_request_id", d.lastID)
	}
	c.cfg.Log.Log(r.Context(), e.level, "console: error shown", attrs...)
	return n
}

// requestID returns p's request id, made on first use (p nil: a new one).
func (c *Console) requestID(p *page) string {
	if p != nil && p.requestID != "" {
		return p.requestID
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if p != nil {
		p.requestID = id
	}
	return id
}

// parsePages parses every page with the layout.
func parsePages(tx *Texts) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"t":      tx.text,
		"utc":    fmtTime,
		"num":    fmtNum,
		"roles":  roleList,
		"perMin": func(n int64) string { return strconv.FormatFloat(float64(n)/60, 'f', 1, 64) },
	}
	base, err := template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "parse the console layout")
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "list the console templates")
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(filepath.Base(n), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "parse console template %s", n)
		}
		pages[name] = t
	}
	return pages, nil
}

func fmtTime(v any) string {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// fmtNum writes an integer in groups of three digits (1,234,567).
func fmtNum(v int64) string {
	s := []byte(strings.TrimPrefix(itoa(v), "-"))
	var out []byte
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, ch)
	}
	if v < 0 {
		return "-" + string(out)
	}
	return string(out)
}
