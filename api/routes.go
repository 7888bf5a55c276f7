package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/tacerr"
)

// handler serves one route for an authorised caller and returns the status
// and body to send (a value encoded as JSON, a rawBody, an http.Handler that
// writes the response itself, or nil for no body).
type handler func(s *Server, w http.ResponseWriter, r *http.Request, c *call) (int, any, error)

// route is one entry of the API: who may call it, on which objects, and
// what serves it.
type route struct {
	pattern string
	// access lists the roles that may call the route and, for each, the
	// objects (devices, IMEIs, reservations) it may act on there; nil with
	// public false means any authenticated caller (the route names no
	// object).
	access access
	public bool // no client certificate needed
	handle handler
	// stationInUseCase: the use case authenticates a calling station in
	// its first ledger read (provisioner.WithStationCheck) instead of the
	// API reading its record first.
	stationInUseCase bool
}

// access is one route's cells of the table: role -> ownership scope.
type access map[provisioner.Role]provisioner.Scope

// Role sets of the matrix. A station acts on the devices, IMEIs and
// reservations of its own factory; operators, auditors, regulators and
// admins on all of them.
const (
	own = provisioner.ScopeFactory
	all = provisioner.ScopeAll
)

var (
	stations = access{provisioner.RoleStation: own}
	fixers   = access{provisioner.RoleStation: own, provisioner.RoleOperator: all, provisioner.RoleAdmin: all}
	revokers = access{provisioner.RoleOperator: all, provisioner.RoleAdmin: all}
	readers  = access{provisioner.RoleStation: own, provisioner.RoleOperator: all, provisioner.RoleAuditor: all,
		provisioner.RoleRegulator: all, provisioner.RoleAdmin: all}
	// Sites (api/sites.go): a site acts for itself only, which the
	// handlers check against the {site} of the path.
	sites       = access{provisioner.RoleSite: all}
	siteReaders = access{provisioner.RoleSite: all, provisioner.RoleOperator: all, provisioner.RoleAuditor: all, provisioner.RoleAdmin: all}
)

// routes is the API, its role matrix and its ownership rules: the one
// table that decides who may call what, and on whose objects
// (docs/api.md documents it; the role-matrix and ownership tests check
// every cell). A role is allowed only when it is listed: admin is not
// implied. The use cases apply the scope to the object they load
// (provisioner.Scope), before anything is written.
var routes = []route{
	{pattern: "POST " + wire.PathProvision, access: stations, handle: (*Server).provision, stationInUseCase: true},
	{pattern: "POST " + wire.PathAllocations, access: stations, handle: (*Server).allocate},
	{pattern: "POST " + wire.PathBind, access: stations, handle: (*Server).bind, stationInUseCase: true},
	{pattern: "POST " + wire.PathVoidIMEI, access: fixers, handle: (*Server).void},
	{pattern: "POST " + wire.PathReissue, access: fixers, handle: (*Server).reissue},
	{pattern: "POST " + wire.PathRevoke, access: revokers, handle: (*Server).revoke},
	{pattern: "GET " + wire.PathDevice, access: readers, handle: (*Server).device},
	{pattern: "GET " + wire.PathIMEI, access: readers, handle: (*Server).imeiStatus},
	{pattern: "GET " + wire.PathPools, access: readers, handle: (*Server).pools},
	{pattern: "POST " + wire.PathSiteLeases, access: sites, handle: (*Server).siteLease},
	{pattern: "POST " + wire.PathSiteSync, access: sites, handle: (*Server).siteSync},
	{pattern: "GET " + wire.PathSiteStatus, access: siteReaders, handle: (*Server).siteStatus},
	{pattern: "GET " + wire.PathOpenAPI, handle: (*Server).openAPI},
	{pattern: "GET " + wire.PathMetrics, handle: (*Server).metrics},
	{pattern: "GET " + wire.PathHealthz, public: true, handle: (*Server).healthz},
	{pattern: "GET " + wire.PathReadyz, public: true, handle: (*Server).readyz},
	// Authenticity (api/verify.go): challenges and checks admit
	// regulators and operators, or anyone rate limited when
	// authenticity.public_verify is on; the handlers decide.
	{pattern: "POST " + PathChallenges, public: true, handle: (*Server).challenge},
	{pattern: "POST " + PathVerify, public: true, handle: (*Server).verifyDevice},
	{pattern: "GET " + PathLookup, public: true, handle: (*Server).lookup},
	{pattern: "GET " + PathCRL, public: true, handle: (*Server).crl},
	{pattern: "POST " + PathOCSP, public: true, handle: (*Server).ocsp},
	{pattern: "GET " + PathOCSPGet, public: true, handle: (*Server).ocsp},
}

// authorize reports whether a may call the route and returns the widest
// scope its roles get there (ScopeNone when it may not call it).
func (rt route) authorize(a provisioner.Actor) (provisioner.Scope, bool) {
	if rt.public || rt.access == nil {
		return provisioner.ScopeAll, true
	}
	scope, ok := provisioner.ScopeNone, false
	for _, have := range a.Roles {
		if sc, listed := rt.access[have]; listed {
			ok = true
			scope = max(scope, sc)
		}
	}
	return scope, ok
}

// roles lists the roles the route admits, in the matrix's order.
func (rt route) roles() []provisioner.Role {
	var out []provisioner.Role
	for _, r := range provisioner.AllRoles {
		if _, ok := rt.access[r]; ok {
			out = append(out, r)
		}
	}
	return out
}

func joinRoles(rs []provisioner.Role) string {
	if len(rs) == 0 {
		return "none"
	}
	ss := make([]string, len(rs))
	for i, r := range rs {
		ss[i] = string(r)
	}
	return strings.Join(ss, ", ")
}

// created is 201 for a first answer and 200 for a replay.
func created(replayed bool) int {
	if replayed {
		return http.StatusOK
	}
	return http.StatusCreated
}

func (s *Server) provision(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	var req wire.ProvisionRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	c.requestID = req.RequestID
	if err := policy.CheckDeviceSerial(req.DeviceSerial); err != nil {
		return 0, nil, err
	}
	csr, err := csrBytes(req.CSR)
	if err != nil {
		return 0, nil, err
	}
	iss, err := s.p.Provision(r.Context(), provisioner.ProvisionInput{
		Actor: c.caller.actor, RequestID: req.RequestID, DeviceSerial: req.DeviceSerial,
		Product: req.Product, Pool: req.Pool, IMEICount: req.IMEICount, CSR: csr,
	})
	if err != nil {
		return 0, nil, s.withExistingIMEIs(r.Context(), c.caller.actor, req.DeviceSerial, err)
	}
	return created(iss.Replayed), issuedResponse(iss), nil
}

func (s *Server) allocate(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	var req wire.AllocationRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	c.requestID = req.RequestID
	al, err := s.p.Allocate(r.Context(), provisioner.AllocateInput{
		Actor: c.caller.actor, RequestID: req.RequestID, Pool: req.Pool,
		Count: req.Count, IMEIsPerDevice: req.IMEIsPerDevice,
	})
	if err != nil {
		return 0, nil, err
	}
	resp := wire.AllocationResponse{RequestID: al.RequestID, Pool: al.Pool, CreatedAt: al.CreatedAt.UTC(), Devices: make([][]string, len(al.Devices))}
	for i, d := range al.Devices {
		resp.Devices[i] = imeiStrings(d)
	}
	return created(al.Replayed), resp, nil
}

func (s *Server) bind(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	var req wire.BindRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	c.requestID = req.RequestID
	if err := policy.CheckDeviceSerial(req.DeviceSerial); err != nil {
		return 0, nil, err
	}
	ms, err := parseIMEIs(req.IMEIs, "imeis")
	if err != nil {
		return 0, nil, err
	}
	csr, err := csrBytes(req.CSR)
	if err != nil {
		return 0, nil, err
	}
	iss, err := s.p.Bind(r.Context(), provisioner.BindInput{
		Actor: c.caller.actor, RequestID: req.RequestID, IMEIs: ms, DeviceSerial: req.DeviceSerial, CSR: csr,
	})
	if err != nil {
		return 0, nil, s.withExistingIMEIs(r.Context(), c.caller.actor, req.DeviceSerial, err)
	}
	return created(iss.Replayed), issuedResponse(iss), nil
}

func (s *Server) void(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	m, err := parseIMEI(r.PathValue("imei"), "imei")
	if err != nil {
		return 0, nil, err
	}
	var req wire.VoidRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	reason, err := lifecycle.ParseVoidReason("reason", req.Reason)
	if err != nil {
		return 0, nil, err
	}
	if err := s.p.Void(r.Context(), provisioner.VoidInput{Actor: c.caller.actor, IMEI: m, Reason: reason, Note: req.Note}); err != nil {
		return 0, nil, err
	}
	rec, err := s.p.IMEI(r.Context(), c.caller.actor, m)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, imeiStatus(rec), nil
}

func (s *Server) reissue(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	var req wire.ReissueRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	c.requestID = req.RequestID
	csr, err := csrBytes(req.CSR)
	if err != nil {
		return 0, nil, err
	}
	iss, err := s.p.Reissue(r.Context(), provisioner.ReissueInput{
		Actor: c.caller.actor, RequestID: req.RequestID, DeviceSerial: r.PathValue("serial"), CSR: csr,
	})
	if err != nil {
		return 0, nil, err
	}
	return created(iss.Replayed), issuedResponse(iss), nil
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	var req wire.RevokeRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	serial := r.PathValue("serial")
	reason, err := lifecycle.ParseRevokeReason("reason", req.Reason, lifecycle.RevokeDeviceReasons)
	if err != nil {
		return 0, nil, err
	}
	if err := s.p.Revoke(r.Context(), provisioner.RevokeInput{Actor: c.caller.actor, DeviceSerial: serial, Reason: reason}); err != nil {
		return 0, nil, err
	}
	st, err := s.deviceStatus(r.Context(), c.caller.actor, serial)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, st, nil
}

func (s *Server) device(_ http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	st, err := s.deviceStatus(r.Context(), c.caller.actor, r.PathValue("serial"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, st, nil
}

// deviceStatus reads a device and its IMEIs' records.
func (s *Server) deviceStatus(ctx context.Context, a provisioner.Actor, serial string) (wire.DeviceStatus, error) {
	d, err := s.p.Device(ctx, a, serial)
	if err != nil {
		return wire.DeviceStatus{}, err
	}
	st := deviceStatus(d)
	for _, m := range d.IMEIs {
		rec, err := s.p.IMEI(ctx, a, m)
		if err != nil {
			return wire.DeviceStatus{}, err
		}
		st.IMEIs = append(st.IMEIs, imeiStatus(rec))
	}
	return st, nil
}

func (s *Server) imeiStatus(_ http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	m, err := parseIMEI(r.PathValue("imei"), "imei")
	if err != nil {
		return 0, nil, err
	}
	rec, err := s.p.IMEI(r.Context(), c.caller.actor, m)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, imeiStatus(rec), nil
}

func (s *Server) pools(_ http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	ps, err := s.p.Pools(r.Context(), c.caller.actor)
	if err != nil {
		return 0, nil, err
	}
	out := wire.PoolList{Pools: make([]wire.PoolStatus, len(ps))}
	for i, p := range ps {
		out.Pools[i] = poolStatus(p)
	}
	return http.StatusOK, out, nil
}

func (s *Server) openAPI(http.ResponseWriter, *http.Request, *call) (int, any, error) {
	return http.StatusOK, rawBody{contentType: "application/yaml", data: openAPIDoc}, nil
}

func (s *Server) metrics(http.ResponseWriter, *http.Request, *call) (int, any, error) {
	return http.StatusOK, promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}), nil
}

func (s *Server) healthz(http.ResponseWriter, *http.Request, *call) (int, any, error) {
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

func (s *Server) readyz(_ http.ResponseWriter, r *http.Request, _ *call) (int, any, error) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.p.Ready(ctx); err != nil {
		if tacerr.CodeOf(err) == tacerr.Internal {
			err = tacerr.Wrap(tacerr.Unavailable, err, "the readiness probe failed")
		}
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"status": "ready"}, nil
}

// withExistingIMEIs makes sure a device_already_provisioned error carries
// the device's IMEIs: from the error itself (ProvisionedError) or, failing
// that, from the ledger.
func (s *Server) withExistingIMEIs(ctx context.Context, a provisioner.Actor, serial string, err error) error {
	var pe ProvisionedError
	if !tacerr.Is(err, tacerr.DeviceAlreadyProvisioned) || errors.As(err, &pe) || serial == "" {
		return err
	}
	d, derr := s.p.Device(ctx, a, serial)
	if derr != nil {
		return err
	}
	return provisionedError{err: err, imeis: d.IMEIs}
}

// provisionedError adds a device's IMEIs to a device_already_provisioned
// error.
type provisionedError struct {
	err   error
	imeis []imei.IMEI
}

func (e provisionedError) Error() string              { return e.err.Error() }
func (e provisionedError) Unwrap() error              { return e.err }
func (e provisionedError) ExistingIMEIs() []imei.IMEI { return e.imeis }
