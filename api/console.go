package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/ratelimit"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/online"
)

// What the web console (package console) needs from the API: its mount
// point on the API's listener, the caller's identity read exactly as for
// the API, and the public lookup behind the API's own rate limiter.

// Mount serves h for pattern on the API's listener (for example
// "/console/"), counted in the API's request metrics and access log under
// route pattern. Patterns must not overlap the API's routes.
func (s *Server) Mount(pattern string, h http.Handler) {
	observe := s.m.duration.WithLabelValues(pattern)
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		d := time.Since(start)
		observe.Observe(d.Seconds())
		s.m.requests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Inc()
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http", slog.String("route", pattern), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", sw.status), slog.String("remote", r.RemoteAddr), slog.Duration("duration", d))
	}))
}

// Caller authenticates r's client certificate as the API does (the same
// CAs, identity map and roles; a station is looked up, so a disabled or
// replaced station certificate is refused) and returns its Actor.
func (s *Server) Caller(r *http.Request) (provisioner.Actor, error) {
	cl, err := s.ident.identify(r.TLS)
	if err != nil {
		return provisioner.Actor{}, err
	}
	if err := checkEnrolled(r.Context(), s.p, cl); err != nil {
		return provisioner.Actor{}, err
	}
	return cl.actor, nil
}

// PublicLookup answers the public lookup of m for r's caller, counted by
// the same limiter as GET /v1/lookup/{imei} (LookupLimiter), so a page and
// the JSON route share one quota. When a limit is reached it returns the
// refusal (RetryAfter > 0: the seconds to wait, and the limit that refused,
// the caller's or its site's) and no lookup.
func (s *Server) PublicLookup(ctx context.Context, r *http.Request, m imei.IMEI) (online.Lookup, ratelimit.Refusal, error) {
	a, err := s.authn()
	if err != nil {
		return online.Lookup{}, ratelimit.Refusal{}, err
	}
	if no := a.lookupLimiter.Admit(r, s.lookupIdentity(r)); no.RetryAfter > 0 {
		return online.Lookup{}, no, nil
	}
	l, err := a.auth.Lookup(ctx, m)
	if err != nil {
		return online.Lookup{}, ratelimit.Refusal{}, err
	}
	return l, ratelimit.Refusal{}, nil
}

// admit returns a with the scope the route gives its roles, or the
// forbidden error naming the roles the route admits.
func (rt route) admit(a provisioner.Actor) (provisioner.Actor, error) {
	scope, ok := rt.authorize(a)
	if !ok {
		return a, tacerr.New(tacerr.Forbidden, "%s (roles %s) may not call %s; allowed roles: %s", a.ID, joinRoles(a.Roles), rt.pattern, joinRoles(rt.roles()))
	}
	a.Scope = scope
	return a, nil
}

// Authorize applies the route table's row for pattern (an API route such
// as "POST /v1/devices/{serial}/revoke") to a: a with the scope the row
// gives its roles, or a forbidden error. The console runs the same use
// cases as those routes and asks here, so one table decides for both.
func (s *Server) Authorize(a provisioner.Actor, pattern string) (provisioner.Actor, error) {
	for _, rt := range routes {
		if rt.pattern == pattern {
			return rt.admit(a)
		}
	}
	return a, tacerr.New(tacerr.Internal, "no API route %q to authorize against", pattern)
}

// lookupIdentity is who the lookup limiter counts r against: an
// authenticated caller as itself, anyone else by address (package
// ratelimit).
func (s *Server) lookupIdentity(r *http.Request) string {
	if cl, err := s.ident.identify(r.TLS); err == nil {
		return cl.actor.ID
	}
	return ""
}

// Services returns the provisioner the API serves (with the authenticity
// hooks: a revocation through it wakes the CRL publisher), for the console's
// void and revoke forms.
func (s *Server) Services() Provisioner { return s.p }

// PublicError is what the API would tell a client about err: the HTTP
// status, the title and the detail (the error's message only when the code
// allows it, never a wrapped cause). The console shows the same.
func PublicError(err error) (status int, title, detail string) {
	p, _ := problemFor(err)
	return p.Status, p.Title, p.Detail
}
