package api

import (
	"context"
	"encoding/base64"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
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
	RespondOCSP(ctx context.Context, der []byte) ([]byte, error)
}

// AuthenticityConfig is the `authenticity:` settings of the API.
type AuthenticityConfig struct {
	// PublicVerify lets callers without a client certificate (or without
	// the regulator or operator role) ask for challenges and verify,
	// rate limited per client address.
	PublicVerify bool `yaml:"public_verify" doc:"let anyone (rate limited per address) request challenges and verify devices"`
	// PublicRate is the sustained rate (requests per second per client
	// address) of public challenges and checks; PublicBurst the burst.
	PublicRate  float64 `yaml:"public_rate" doc:"public challenges and checks per second per client address"`
	PublicBurst int     `yaml:"public_burst" doc:"burst of public challenges and checks per client address"`
	// LookupRate and LookupBurst limit GET /v1/lookup per client address.
	LookupRate  float64 `yaml:"lookup_rate" doc:"GET /v1/lookup requests per second per client address"`
	LookupBurst int     `yaml:"lookup_burst" doc:"burst of GET /v1/lookup requests per client address"`
}

// DefaultAuthenticityConfig: public checks off; 1 check/s (burst 5) and 5
// lookups/s (burst 20) per client address.
func DefaultAuthenticityConfig() AuthenticityConfig {
	return AuthenticityConfig{PublicRate: 1, PublicBurst: 5, LookupRate: 5, LookupBurst: 20}
}

// Validate names the first wrong field.
func (c AuthenticityConfig) Validate() error {
	switch {
	case c.PublicRate <= 0 || c.PublicBurst < 1:
		return tacerr.Field(tacerr.InvalidConfig, "authenticity.public_rate", "public_rate must be > 0 and public_burst >= 1")
	case c.LookupRate <= 0 || c.LookupBurst < 1:
		return tacerr.Field(tacerr.InvalidConfig, "authenticity.lookup_rate", "lookup_rate must be > 0 and lookup_burst >= 1")
	}
	return nil
}

// authProvisioner is a Provisioner that also serves the authenticity
// routes (see WithAuthenticity).
type authProvisioner struct {
	Provisioner
	auth          Authenticity
	cfg           AuthenticityConfig
	verifyLimit   *limiter
	lookupLimiter *limiter
}

// WithAuthenticity returns p extended with the authenticity routes served
// by a: hand the result to New.
func WithAuthenticity(p Provisioner, a Authenticity, cfg AuthenticityConfig) (Provisioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &authProvisioner{Provisioner: p, auth: a, cfg: cfg,
		verifyLimit: newLimiter(cfg.PublicRate, cfg.PublicBurst), lookupLimiter: newLimiter(cfg.LookupRate, cfg.LookupBurst)}, nil
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
var verifiers = []provisioner.Role{provisioner.RoleRegulator, provisioner.RoleOperator}

// verifyCaller admits a challenge or verify request: a regulator or
// operator by client certificate, otherwise (when public_verify is on)
// anyone within the per-address rate limit. It returns a response to send
// instead (429), or an error.
func (s *Server) verifyCaller(r *http.Request, c *call, a *authProvisioner) (http.Handler, error) {
	cl, err := s.ident.identify(r.TLS)
	if err == nil {
		c.caller = cl
		if err = checkStation(r.Context(), s.p, cl); err != nil {
			return nil, err
		}
		if (route{roles: verifiers}).allows(cl.actor) {
			return nil, nil
		}
	}
	if !a.cfg.PublicVerify {
		if err != nil {
			return nil, err
		}
		return nil, tacerr.New(tacerr.Forbidden, "%s (roles %s) may not call %s; allowed roles: %s", cl.actor.ID, joinRoles(cl.actor.Roles), r.URL.Path, joinRoles(verifiers))
	}
	return a.verifyLimit.admit(r), nil
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
	if deny := a.lookupLimiter.admit(r); deny != nil {
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
		raw, uerr := url.PathUnescape(r.PathValue("request"))
		if uerr == nil {
			der, uerr = base64.StdEncoding.DecodeString(raw)
		}
		if uerr != nil {
			der = nil
		}
	} else {
		der, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
		if err != nil {
			der = nil
		}
	}
	resp, err := a.auth.RespondOCSP(r.Context(), der)
	if resp == nil && err != nil {
		return 0, nil, err
	}
	// Malformed requests get OCSP's own error response (status 200, as
	// RFC 6960 clients expect).
	return http.StatusOK, rawBody{contentType: revocation.OCSPResponseType, data: resp}, nil
}

// clientAddr is the caller's IP address (the rate-limit key).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limiter is a token bucket per client address.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

// admit takes a token for r's client address; when none is left it
// returns the 429 response to send (with Retry-After), else nil.
func (l *limiter) admit(r *http.Request) http.Handler {
	retry := l.take(clientAddr(r))
	if retry == 0 {
		return nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		writeProblem(w, wire.Problem{
			Type: "https://tacline.dev/problems/" + string(tacerr.RateLimited), Title: "Too many requests", Status: http.StatusTooManyRequests,
			Detail: "too many requests from " + clientAddr(req) + ": retry after " + strconv.Itoa(retry) + " s", Instance: req.URL.Path,
			Code: string(tacerr.RateLimited), Retryable: true,
		}, statusOf{status: http.StatusTooManyRequests, retryAfter: retry})
	})
}

// take returns 0 when a token was taken, else the whole seconds until one
// is available.
func (l *limiter) take(key string) int {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		// Forget clients whose buckets are full again.
		full := time.Duration(l.burst / l.rate * float64(time.Second))
		for k, b := range l.buckets {
			if now.Sub(b.at) > full {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return max(1, int(math.Ceil((1-b.tokens)/l.rate)))
}

// online.Authority is what a server serves the authenticity routes with.
var (
	_ Authenticity = online.Authority{}
	_ Triggerer    = online.Authority{}
)
