package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Provisioner is what the server needs from the use cases
// (*provisioner.Service satisfies it). Every method returns tacerr errors.
type Provisioner interface {
	Provision(ctx context.Context, in provisioner.ProvisionInput) (*provisioner.Issued, error)
	Allocate(ctx context.Context, in provisioner.AllocateInput) (*provisioner.Allocation, error)
	Bind(ctx context.Context, in provisioner.BindInput) (*provisioner.Issued, error)
	Void(ctx context.Context, in provisioner.VoidInput) error
	Reissue(ctx context.Context, in provisioner.ReissueInput) (*provisioner.Issued, error)
	Revoke(ctx context.Context, in provisioner.RevokeInput) error
	Device(ctx context.Context, a provisioner.Actor, serial string) (*provisioner.Device, error)
	IMEI(ctx context.Context, a provisioner.Actor, m imei.IMEI) (store.IMEIRecord, error)
	Pools(ctx context.Context, a provisioner.Actor) ([]store.PoolStats, error)
	PoolsRemaining(ctx context.Context) ([]store.PoolStats, error)
	// Station returns an enrolled station; an unknown station is an error
	// with code unauthorized (or not_found), a disabled one forbidden.
	Station(ctx context.Context, id string) (provisioner.Station, error)
	// PersonCertificate returns the recorded role certificate of one
	// person with this serial (lower-case hex), or not_found.
	PersonCertificate(ctx context.Context, serial string) (store.PersonCert, error)
	// Ready probes the database and the HSM.
	Ready(ctx context.Context) error
}

// SignObserver is implemented by a Provisioner that can report how long
// each HSM signature takes: New hands it the observer of
// tacline_hsm_sign_duration_seconds.
type SignObserver interface {
	SetSignObserver(observe func(time.Duration))
}

// KeyReuseObserver is implemented by a Provisioner that reports each device
// key refused as reused: New hands it the tacline_key_reuse_total counter
// (otherwise the server counts key_reused errors).
type KeyReuseObserver interface {
	SetKeyReuseObserver(observe func())
}

// readyTimeout bounds the /readyz probe.
const readyTimeout = 3 * time.Second

// Server is the HTTP API. It is an http.Handler; serve it over TLS with
// TLSConfig (or with Serve, which does both).
type Server struct {
	cfg      Config
	p        Provisioner
	log      *slog.Logger
	mux      *http.ServeMux
	tls      *tls.Config
	ident    *identifier
	m        *metrics
	gatherer prometheus.Gatherer
	ocspGet  http.Handler // the OCSP GET route, reached before mux
	sites    Sites        // headquarters' sites API; nil: not served
}

// New builds the server: it validates cfg, reads the TLS files it names and
// registers the API's metrics on reg (nil: a new registry). /metrics serves
// reg when it is also a prometheus.Gatherer (a *prometheus.Registry), else
// the default gatherer.
func New(cfg Config, p Provisioner, reg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p == nil {
		return nil, tacerr.New(tacerr.Internal, "api.New: the provisioner is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	cert, err := loadServerCert(cfg)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	taclineCAs, err := loadCAs("client_ca", cfg.ClientCA, pool)
	if err != nil {
		return nil, err
	}
	if _, err := loadCAs("mapped_ca", cfg.MappedCA, pool); err != nil {
		return nil, err
	}
	stepcaCAs, err := loadCAs("stepca_station_ca", cfg.StepCAStationCA, pool)
	if err != nil {
		return nil, err
	}
	ident := newIdentifier(taclineCAs, cfg.IdentityMap)
	ident.roots, ident.stepca = pool, map[string]bool{}
	for _, c := range stepcaCAs {
		ident.stepca[string(c.Raw)] = true
	}
	m, err := newMetrics(reg, p, log)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		p:     p,
		log:   log,
		mux:   http.NewServeMux(),
		ident: ident,
		m:     m,
		tls: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// Requested, verified per request (cached) so that an expired,
			// unknown or revoked certificate gets a 401 naming the cause.
			ClientAuth: tls.RequestClientCert,
			ClientCAs:  pool,
			// TLS 1.3 is negotiated whenever the client offers it; for
			// TLS 1.2 only forward-secret AEAD suites.
			CipherSuites: []uint16{
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
				tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
			},
		},
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	} else {
		s.gatherer = prometheus.DefaultGatherer
	}
	if so, ok := p.(SignObserver); ok {
		so.SetSignObserver(s.ObserveHSMSign)
	}
	if ko, ok := p.(KeyReuseObserver); ok {
		ko.SetKeyReuseObserver(m.keyReuse.Inc)
		m.keyReuseHooked = true
	}
	for _, rt := range routes {
		h := s.wrap(rt)
		s.mux.Handle(rt.pattern, h)
		if rt.pattern == "GET "+PathOCSPGet {
			s.ocspGet = h
		}
	}
	s.mux.HandleFunc("/", s.unmatched)
	return s, nil
}

// SetRevocationChecker installs what the server asks whether a step-ca
// station certificate was revoked (stepca.CRLWatcher). Call it before
// serving.
func (s *Server) SetRevocationChecker(rc RevocationChecker) { s.ident.revoked = rc }

// TLSConfig returns the server's TLS configuration: its certificate, TLS 1.2
// minimum, client certificates verified against client_ca and mapped_ca
// when given (tls.VerifyClientCertIfGiven, so /healthz and /readyz work
// without one).
func (s *Server) TLSConfig() *tls.Config { return s.tls.Clone() }

// ServeHTTP routes a request. OCSP GETs go to their route before
// ServeMux, which would clean (and redirect) a base64 path holding "//".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.ocspGet != nil && r.Method == http.MethodGet && strings.HasPrefix(r.URL.EscapedPath(), ocspGetPrefix) {
		r.Pattern = "GET " + PathOCSPGet
		s.ocspGet.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// ObserveHSMSign records the duration of one HSM signature in
// tacline_hsm_sign_duration_seconds.
func (s *Server) ObserveHSMSign(d time.Duration) { s.m.hsmSign.Observe(d.Seconds()) }

// HTTPServer returns an http.Server for s with the configured timeouts and
// TLS configuration; its errors go to the server's logger.
func (s *Server) HTTPServer() *http.Server {
	read, write, idle := s.cfg.timeouts()
	return &http.Server{
		Addr:              s.cfg.Listen,
		Handler:           s,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: min(read, 5*time.Second),
		ReadTimeout:       read,
		WriteTimeout:      write,
		IdleTimeout:       idle,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// shutdownGrace bounds how long Serve waits for requests in flight.
const shutdownGrace = 10 * time.Second

// Serve serves HTTPS on ln until ctx is done, then shuts down gracefully
// (requests in flight get up to 10 s). It returns nil after a clean
// shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := s.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return tacerr.Wrap(tacerr.Unavailable, err, "serve HTTPS on %s", ln.Addr())
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "shut the HTTPS server down")
	}
	return nil
}

// ListenAndServe listens on cfg.Listen and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return tacerr.Field(tacerr.InvalidConfig, "server.listen", "cannot listen on %s: %v", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// call is one request in flight: who called, and what the access log says
// about it.
type call struct {
	caller    caller
	requestID string // the body's request_id, when there is one
	code      tacerr.Code
}

// wrap runs a route: authentication, the role check, the handler, the
// response, metrics and the access log.
func (s *Server) wrap(rt route) http.Handler {
	observe := s.m.duration.WithLabelValues(rt.pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		c := &call{}
		status, body, err := s.run(w, r, rt, c)
		if err != nil {
			status = s.fail(w, r, c, err)
		} else {
			status = s.respond(w, r, status, body)
		}
		d := time.Since(start)
		observe.Observe(d.Seconds())
		s.m.requests.WithLabelValues(rt.pattern, strconv.Itoa(status)).Inc()
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "http",
			slog.String("route", rt.pattern),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.String("code", string(c.code)),
			slog.String("actor", c.caller.actor.ID),
			slog.String("request_id", c.requestID),
			slog.String("remote", r.RemoteAddr),
			slog.Duration("duration", d))
	})
}

// run authenticates and authorises the caller, then runs the handler.
func (s *Server) run(w http.ResponseWriter, r *http.Request, rt route, c *call) (int, any, error) {
	if rt.public {
		return rt.handle(s, w, r, c)
	}
	cl, err := s.ident.identify(r.TLS)
	if err != nil {
		return 0, nil, err
	}
	c.caller = cl
	if cl.actor.Station != "" && rt.stationInUseCase {
		// The use case reads the station's record in its first ledger
		// read and runs the API's check on it before it answers anything
		// else (one read per request). A request that ends without the
		// station admitted is authenticated here before it is answered,
		// the station's verdict first.
		ctx := provisioner.WithStationCheck(r.Context(), func(st provisioner.Station) error { return currentStation(cl, st) })
		status, body, err := s.admitted(w, r.WithContext(ctx), rt, c)
		judged, verdict := provisioner.StationVerdict(ctx)
		if !judged {
			verdict = checkEnrolled(ctx, s.p, cl)
		}
		if verdict != nil {
			return 0, nil, verdict
		}
		return status, body, err
	}
	if cl.actor.Station != "" {
		// The station's record, read to authenticate it, is reused by the
		// use case in the same request (one read).
		r = r.WithContext(provisioner.WithStationMemo(r.Context()))
	}
	if err := checkEnrolled(r.Context(), s.p, cl); err != nil {
		return 0, nil, err
	}
	return s.admitted(w, r, rt, c)
}

// admitted applies the route's role check, then runs the handler.
func (s *Server) admitted(w http.ResponseWriter, r *http.Request, rt route, c *call) (int, any, error) {
	var err error
	if c.caller.actor, err = rt.admit(c.caller.actor); err != nil {
		return 0, nil, err
	}
	return rt.handle(s, w, r, c)
}

// rawBody is a response body sent as is.
type rawBody struct {
	contentType string
	data        []byte
}

// respond writes a handler's result and returns the status sent.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, status int, body any) int {
	switch b := body.(type) {
	case nil:
		w.WriteHeader(status)
	case http.Handler:
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		b.ServeHTTP(sw, r)
		return sw.status
	case rawBody:
		w.Header().Set("Content-Type", b.contentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(b.data)))
		w.WriteHeader(status)
		_, _ = w.Write(b.data)
	default:
		// Encoded into a pooled buffer: the bytes json.Marshal and a
		// newline would give, without a new copy of the body (and
		// another to append the newline) for every response.
		buf := getBuffer()
		defer putBuffer(buf)
		if err := json.NewEncoder(buf).Encode(body); err != nil {
			return s.fail(w, r, &call{}, tacerr.Wrap(tacerr.Internal, err, "encode the response"))
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(buf.Len()))
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_, _ = w.Write(buf.Bytes())
	}
	return status
}

// buffers are the response bodies' encoding buffers, reused; one that grew
// past maxPooledBuffer (a large listing) is left to the collector.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuffer = 64 << 10

func getBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	buffers.Put(b)
}

// fail writes err as a problem, counts and logs it, and returns the status.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *call, err error) int {
	p, st := problemFor(err)
	p.Instance = r.URL.Path
	c.code = tacerr.Code(p.Code)
	s.m.countError(c.code)
	if st.status >= 500 {
		// The cause goes to the log only (errors never carry PINs).
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
			slog.String("path", r.URL.Path), slog.String("code", p.Code), slog.String("err", err.Error()))
	}
	writeProblem(w, p, st)
	return p.Status
}

// unmatched answers requests no route matches: 405 when the path exists
// with another method, else 404, both as problems.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pat := s.mux.Handler(probe); pat != "/" && pat != "" {
			allow = append(allow, m)
		}
	}
	var err error
	status := http.StatusNotFound
	if len(allow) > 0 {
		status = http.StatusMethodNotAllowed
		w.Header().Set("Allow", strings.Join(allow, ", "))
		err = tacerr.New(tacerr.InvalidInput, "method %s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))
	} else {
		err = tacerr.New(tacerr.NotFound, "no API route %s %s: see /v1/openapi.yaml", r.Method, r.URL.Path)
	}
	p, st := problemFor(err)
	p.Status, p.Instance = status, r.URL.Path
	st.status = status
	s.m.countError(tacerr.Code(p.Code))
	s.m.requests.WithLabelValues("unmatched", strconv.Itoa(status)).Inc()
	writeProblem(w, p, st)
}

// statusWriter remembers the status a delegated handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// The provisioner's Service is what the server serves.
var (
	_ Provisioner      = (*provisioner.Service)(nil)
	_ SignObserver     = (*provisioner.Service)(nil)
	_ KeyReuseObserver = (*provisioner.Service)(nil)
)
