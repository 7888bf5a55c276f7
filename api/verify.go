package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/ratelimit"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
)

// Paths of the authenticity routes.
const (
	PathChallenges = "/v1/challenges"
	PathVerify     = "/v1/verify"
	PathLookup     = "/v1/lookup/{imei}"
	PathCRL        = "/v1/crl/{file}"
	PathOCSP       = "/v1/ocsp"
	PathOCSPGet    = "/v1/ocsp/{request}"
)

// Authenticity is what the authenticity routes need: challenges, checks
// and the public lookup (online.Service), CRLs and OCSP
// (revocation.Publisher).
type Authenticity interface {
	NewChallenge(ctx context.Context, client string) (online.Challenge, error)
	Verify(ctx context.Context, req verify.Request) (verify.Result, error)
	Lookup(ctx context.Context, m imei.IMEI) (online.Lookup, error)
	CRL(ctx context.Context, issuerKeyID string) (*store.CRLRecord, error)
	RespondOCSP(ctx context.Context, der []byte) (revocation.OCSPAnswer, error)
}

// AuthenticityConfig is the `authenticity:` settings of the API.
type AuthenticityConfig struct {
	// PublicVerify lets callers without a client certificate (or without
	// the regulator or operator role) ask for challenges and verify,
	// rate limited per caller (package ratelimit: the authenticated
	// identity, else the address's /24 or /56).
	PublicVerify bool `yaml:"public_verify" doc:"let anyone (rate limited per caller) request challenges and verify devices"`
	// PublicRate is the sustained rate (requests per second per caller)
	// of public challenges and checks; PublicBurst the burst.
	//
	// Every limit here is per caller and per replica: each server keeps
	// its buckets in its own memory, so N replicas behind one address
	// admit up to N times the limit. Set each replica to the total divided
	// by N (docs/operations.md, "Rate limits and replicas").
	PublicRate  float64 `yaml:"public_rate" doc:"public challenges and checks per second per caller, on each replica (N replicas behind one address: the total / N, see docs/operations.md)"`
	PublicBurst int     `yaml:"public_burst" doc:"burst of public challenges and checks per caller, on each replica (the total burst / N, at least 1)"`
	// PublicSiteRate and PublicSiteBurst limit the anonymous callers of
	// one site (IPv4 /16, IPv6 /48) together: an IPv6 /48 holds 256 /56
	// callers. At least the caller's rate and burst.
	PublicSiteRate  float64 `yaml:"public_site_rate" doc:"public challenges and checks per second per site: all anonymous callers of one IPv4 /16 or IPv6 /48 together, on each replica (at least public_rate)"`
	PublicSiteBurst int     `yaml:"public_site_burst" doc:"burst of public challenges and checks per site (IPv4 /16, IPv6 /48), on each replica (at least public_burst)"`
	// LookupRate and LookupBurst limit GET /v1/lookup (and the console's
	// /check page, which shares its quota) per caller.
	LookupRate  float64 `yaml:"lookup_rate" doc:"GET /v1/lookup and /check requests per second per caller, on each replica (N replicas behind one address: the total / N, see docs/operations.md)"`
	LookupBurst int     `yaml:"lookup_burst" doc:"burst of GET /v1/lookup and /check requests per caller, on each replica (the total burst / N, at least 1)"`
	// LookupSiteRate and LookupSiteBurst: the same per site.
	LookupSiteRate  float64 `yaml:"lookup_site_rate" doc:"GET /v1/lookup and /check requests per second per site: all anonymous callers of one IPv4 /16 or IPv6 /48 together, on each replica (at least lookup_rate)"`
	LookupSiteBurst int     `yaml:"lookup_site_burst" doc:"burst of GET /v1/lookup and /check requests per site (IPv4 /16, IPv6 /48), on each replica (at least lookup_burst)"`
}

// DefaultAuthenticityConfig: public checks off; 1 check/s (burst 5) and 5
// lookups/s (burst 20) per caller; per site (IPv4 /16, IPv6 /48) 8 times
// that.
func DefaultAuthenticityConfig() AuthenticityConfig {
	return AuthenticityConfig{PublicRate: 1, PublicBurst: 5, PublicSiteRate: 8, PublicSiteBurst: 40,
		LookupRate: 5, LookupBurst: 20, LookupSiteRate: 40, LookupSiteBurst: 160}
}

// Validate names the first wrong field.
func (c AuthenticityConfig) Validate() error {
	pc, ps := c.publicTiers()
	if err := validTiers("public", pc, ps); err != nil {
		return err
	}
	lc, ls := c.lookupTiers()
	return validTiers("lookup", lc, ls)
}

func (c AuthenticityConfig) publicTiers() (caller, site ratelimit.Tier) {
	return ratelimit.Tier{Rate: c.PublicRate, Burst: c.PublicBurst}, ratelimit.Tier{Rate: c.PublicSiteRate, Burst: c.PublicSiteBurst}
}

func (c AuthenticityConfig) lookupTiers() (caller, site ratelimit.Tier) {
	return ratelimit.Tier{Rate: c.LookupRate, Burst: c.LookupBurst}, ratelimit.Tier{Rate: c.LookupSiteRate, Burst: c.LookupSiteBurst}
}

// validTiers checks the fields authenticity.<name>_rate, _burst,
// _site_rate and _site_burst.
func validTiers(name string, caller, site ratelimit.Tier) error {
	f := func(suffix string) string { return "authenticity." + name + suffix }
	switch {
	case caller.Rate <= 0:
		return tacerr.Field(tacerr.InvalidConfig, f("_rate"), "is %g; give a rate > 0 (requests per second per caller)", caller.Rate)
	case caller.Burst < 1:
		return tacerr.Field(tacerr.InvalidConfig, f("_burst"), "is %d; give a burst >= 1", caller.Burst)
	case site.Rate < caller.Rate:
		return tacerr.Field(tacerr.InvalidConfig, f("_site_rate"), "is %g, below %s_rate %g: a site (IPv4 /16, IPv6 /48) holds many callers; give at least %g", site.Rate, name, caller.Rate, caller.Rate)
	case site.Burst < caller.Burst:
		return tacerr.Field(tacerr.InvalidConfig, f("_site_burst"), "is %d, below %s_burst %d: a site (IPv4 /16, IPv6 /48) holds many callers; give at least %d", site.Burst, name, caller.Burst, caller.Burst)
	}
	return nil
}

// authProvisioner is a Provisioner that also serves the authenticity
// routes (see WithAuthenticity).
type authProvisioner struct {
	Provisioner
	auth          Authenticity
	cfg           AuthenticityConfig
	verifyLimit   *ratelimit.Limiter
	lookupLimiter *ratelimit.Limiter
}

// WithAuthenticity returns p extended with the authenticity routes served
// by a: hand the result to New.
func WithAuthenticity(p Provisioner, a Authenticity, cfg AuthenticityConfig) (Provisioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &authProvisioner{Provisioner: p, auth: a, cfg: cfg,
		verifyLimit: ratelimit.New(cfg.publicTiers()), lookupLimiter: ratelimit.New(cfg.lookupTiers())}, nil
}

// SetSignObserver forwards to the wrapped provisioner.
func (a *authProvisioner) SetSignObserver(observe func(time.Duration)) {
	if so, ok := a.Provisioner.(SignObserver); ok {
		so.SetSignObserver(observe)
	}
}

// SetKeyReuseObserver forwards to the wrapped provisioner.
func (a *authProvisioner) SetKeyReuseObserver(observe func()) {
	if ko, ok := a.Provisioner.(KeyReuseObserver); ok {
		ko.SetKeyReuseObserver(observe)
	}
}

// Triggerer is implemented by an Authenticity that regenerates CRLs:
// revocations through this API wake it at once (its own polling still
// catches revocations made elsewhere, by other replicas or the CLI).
type Triggerer interface{ Trigger() }

func (a *authProvisioner) revoked() {
	if t, ok := a.auth.(Triggerer); ok {
		t.Trigger()
	}
}

// Revoke revokes through the wrapped provisioner and wakes the CRL
// publisher.
func (a *authProvisioner) Revoke(ctx context.Context, in provisioner.RevokeInput) error {
	err := a.Provisioner.Revoke(ctx, in)
	if err == nil {
		a.revoked()
	}
	return err
}

// Reissue revokes the old certificate (superseded): the CRL publisher is
// woken.
func (a *authProvisioner) Reissue(ctx context.Context, in provisioner.ReissueInput) (*provisioner.Issued, error) {
	iss, err := a.Provisioner.Reissue(ctx, in)
	if err == nil {
		a.revoked()
	}
	return iss, err
}

// Void may revoke a bound device's certificate: the CRL publisher is woken.
func (a *authProvisioner) Void(ctx context.Context, in provisioner.VoidInput) error {
	err := a.Provisioner.Void(ctx, in)
	if err == nil {
		a.revoked()
	}
	return err
}

// authn returns the authenticity service, or not_found when the server
// was built without one.
func (s *Server) authn() (*authProvisioner, error) {
	if a, ok := s.p.(*authProvisioner); ok {
		return a, nil
	}
	return nil, tacerr.New(tacerr.NotFound, "authenticity checks are not enabled on this server")
}

// verifiers may ask for challenges and verify without a rate limit.
var verifiers = route{access: access{provisioner.RoleRegulator: all, provisioner.RoleOperator: all}}

// verifyCaller admits a challenge or verify request: a regulator or
// operator by client certificate, otherwise (when public_verify is on)
// anyone within the per-address rate limit. It returns a response to send
// instead (429), or an error.
func (s *Server) verifyCaller(r *http.Request, c *call, a *authProvisioner) (http.Handler, error) {
	cl, err := s.ident.identify(r.TLS)
	if err == nil {
		c.caller = cl
		if err = checkEnrolled(r.Context(), s.p, cl); err != nil {
			return nil, err
		}
		if _, ok := verifiers.authorize(cl.actor); ok {
			return nil, nil
		}
	}
	if !a.cfg.PublicVerify {
		if err != nil {
			return nil, err
		}
		return nil, tacerr.New(tacerr.Forbidden, "%s (roles %s) may not call %s; allowed roles: %s", cl.actor.ID, joinRoles(cl.actor.Roles), r.URL.Path, joinRoles(verifiers.roles()))
	}
	// An authenticated caller without a verifier role is limited as
	// itself, anyone else by address prefix.
	return limited(a.verifyLimit, r, cl.actor.ID), nil
}

func (s *Server) challenge(_ http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	a, err := s.authn()
	if err != nil {
		return 0, nil, err
	}
	if deny, err := s.verifyCaller(r, c, a); deny != nil || err != nil {
		return http.StatusTooManyRequests, deny, err
	}
	client := c.caller.actor.ID
	if client == "" {
		client = "public:" + clientAddr(r)
	}
	ch, err := a.auth.NewChallenge(r.Context(), client)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, ch, nil
}

func (s *Server) verifyDevice(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	a, err := s.authn()
	if err != nil {
		return 0, nil, err
	}
	if deny, err := s.verifyCaller(r, c, a); deny != nil || err != nil {
		return http.StatusTooManyRequests, deny, err
	}
	var req verify.Request
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	res, err := a.auth.Verify(r.Context(), req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, res, nil
}

func (s *Server) lookup(_ http.ResponseWriter, r *http.Request, _ *call) (int, any, error) {
	a, err := s.authn()
	if err != nil {
		return 0, nil, err
	}
	if deny := limited(a.lookupLimiter, r, s.lookupIdentity(r)); deny != nil {
		return http.StatusTooManyRequests, deny, nil
	}
	m, err := parseIMEI(r.PathValue("imei"), "imei")
	if err != nil {
		return 0, nil, err
	}
	out, err := a.auth.Lookup(r.Context(), m)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

func (s *Server) crl(_ http.ResponseWriter, r *http.Request, _ *call) (int, any, error) {
	a, err := s.authn()
	if err != nil {
		return 0, nil, err
	}
	name := r.PathValue("file")
	keyID, ok := strings.CutSuffix(name, ".crl")
	if !ok || keyID == "" {
		return 0, nil, tacerr.Field(tacerr.NotFound, "file", "%q is not a CRL name: CRLs are /v1/crl/<issuer-key-id>.crl", name)
	}
	rec, err := a.auth.CRL(r.Context(), keyID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, rawBody{contentType: "application/pkix-crl", data: rec.DER}, nil
}

// maxOCSPRequest bounds an OCSP request body.
const maxOCSPRequest = 4 << 10

func (s *Server) ocsp(w http.ResponseWriter, r *http.Request, _ *call) (int, any, error) {
	a, err := s.authn()
	if err != nil {
		return 0, nil, err
	}
	var der []byte
	if r.Method == http.MethodGet {
		der = ocspFromPath(r)
	} else {
		der, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
		if err != nil {
			der = nil
		}
	}
	ans, err := a.auth.RespondOCSP(r.Context(), der)
	if ans.DER == nil && err != nil {
		return 0, nil, err
	}
	if r.Method == http.MethodGet {
		ocspCacheHeaders(w.Header(), ans, time.Now())
	}
	// Malformed requests get OCSP's own error response (status 200, as
	// RFC 6960 clients expect).
	return http.StatusOK, rawBody{contentType: revocation.OCSPResponseType, data: ans.DER}, nil
}

// ocspGetPrefix starts the GET form of OCSP: the rest of the path is the
// base64 request (RFC 6960 A.1), raw or URL-escaped. Base64 holds '/',
// even "//", which ServeMux would clean and redirect, so ServeHTTP sends
// these requests straight to the route.
const ocspGetPrefix = "/v1/ocsp/"

// ocspFromPath decodes the base64 request of a GET (nil if it does not
// decode: the responder answers malformedRequest).
func ocspFromPath(r *http.Request) []byte {
	raw, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), ocspGetPrefix))
	if err != nil || len(raw) > 2*maxOCSPRequest {
		return nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if der, err := enc.DecodeString(raw); err == nil {
			return der
		}
	}
	return nil
}

// ocspCacheHeaders sets RFC 5019 6's HTTP caching headers on a GET answer:
// a response valid until nextUpdate may be cached that long, by anyone,
// unchanged, and must be fetched again once stale. A response echoing a
// nonce, or an error response, is not cached.
func ocspCacheHeaders(h http.Header, ans revocation.OCSPAnswer, now time.Time) {
	if ans.Nonce || ans.NextUpdate.IsZero() {
		h.Set("Cache-Control", "no-store")
		return
	}
	maxAge := max(int64(ans.NextUpdate.Sub(now)/time.Second), 0)
	sum := sha256.Sum256(ans.DER)
	h.Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", maxAge))
	h.Set("Last-Modified", ans.ThisUpdate.UTC().Format(http.TimeFormat))
	h.Set("Expires", ans.NextUpdate.UTC().Format(http.TimeFormat))
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
}

// clientAddr is the caller's IP address (a public challenge's client).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limited returns the 429 answer (with Retry-After) for a caller l refused,
// or nil when l admitted it.
func limited(l *ratelimit.Limiter, r *http.Request, identity string) http.Handler {
	no := l.Admit(r, identity)
	if no.RetryAfter == 0 {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, st := problemFor(rateLimitError(no))
		p.Instance = req.URL.Path
		writeProblem(w, p, st)
	})
}

// rateLimitError is the rate_limited error of a refusal, naming the limit
// (the caller's or its site's) and its bucket.
func rateLimitError(no ratelimit.Refusal) *tacerr.Error {
	what := "the per-caller limit (an identity, or an IPv4 /24 or IPv6 /56)"
	if no.Limit == ratelimit.SiteLimit {
		what = "the per-site limit (all anonymous callers of an IPv4 /16 or IPv6 /48 together)"
	}
	return tacerr.New(tacerr.RateLimited, "too many requests from %s: %s is reached; retry after %d s", no.Key, what, no.RetryAfter).
		WithRetryAfter(time.Duration(no.RetryAfter) * time.Second)
}

// LookupLimiter is the rate limiter of the public lookup (GET
// /v1/lookup), or nil when the server has no authenticity routes. A page
// outside the API that answers the same question (the console's /check)
// takes its tokens from it, so the page and the API share one quota per
// caller: call Admit(r, identity) with the caller's authenticated
// identity, or "" for an anonymous caller.
func (s *Server) LookupLimiter() *ratelimit.Limiter {
	if a, ok := s.p.(*authProvisioner); ok {
		return a.lookupLimiter
	}
	return nil
}

// online.Authority is what a server serves the authenticity routes with.
var (
	_ Authenticity = online.Authority{}
	_ Triggerer    = online.Authority{}
)
