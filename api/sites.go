package api

import (
	"context"
	"net/http"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Sites is headquarters' side of the sites API (docs/sites.md); package
// site implements it. Without it the routes answer not_found.
type Sites interface {
	// Authenticate checks that site is enrolled and, when its enrolment
	// names a certificate serial (hex), that certSerial is it.
	Authenticate(ctx context.Context, site, certSerial string) error
	// GrantLease leases the next block of req.Pool to site.
	GrantLease(ctx context.Context, site string, req wire.LeaseRequest) (wire.Lease, error)
	// Sync verifies and applies a batch of site's events.
	Sync(ctx context.Context, site string, req wire.SiteSyncRequest) (wire.SiteSyncResponse, error)
	// Status is HQ's view of site.
	Status(ctx context.Context, site string) (wire.SiteStatus, error)
}

// SetSites serves the sites API with h. Call it before serving.
func (s *Server) SetSites(h Sites) { s.sites = h }

// siteOf returns the {site} of the path after checking that the caller
// may act for it: a site only for itself (its current certificate),
// operators, auditors and admins for any (reads only: the route table
// decides).
func (s *Server) siteOf(r *http.Request, c *call) (string, error) {
	if s.sites == nil {
		return "", tacerr.New(tacerr.NotFound, "this server is not a headquarters for sites")
	}
	name := r.PathValue("site")
	if !store.ValidSiteName(name) {
		return "", tacerr.Field(tacerr.InvalidInput, "site", "%q is not a site name (1-32 lower-case letters, digits or '-')", name)
	}
	if !c.caller.actor.Has(provisioner.RoleOperator) && !c.caller.actor.Has(provisioner.RoleAuditor) {
		if c.caller.site != name {
			return "", tacerr.New(tacerr.Forbidden, "site %s may not act for site %s", c.caller.site, name)
		}
		if err := s.sites.Authenticate(r.Context(), name, c.caller.leaf.SerialNumber.Text(16)); err != nil {
			return "", err
		}
	}
	return name, nil
}

func (s *Server) siteLease(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	name, err := s.siteOf(r, c)
	if err != nil {
		return 0, nil, err
	}
	var req wire.LeaseRequest
	if err := decodeBody(w, r, &req); err != nil {
		return 0, nil, err
	}
	l, err := s.sites.GrantLease(r.Context(), name, req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, l, nil
}

func (s *Server) siteSync(w http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	name, err := s.siteOf(r, c)
	if err != nil {
		return 0, nil, err
	}
	var req wire.SiteSyncRequest
	if err := decodeBodyLimit(w, r, &req, wire.MaxSyncBodyBytes); err != nil {
		return 0, nil, err
	}
	res, err := s.sites.Sync(r.Context(), name, req)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, res, nil
}

func (s *Server) siteStatus(_ http.ResponseWriter, r *http.Request, c *call) (int, any, error) {
	name, err := s.siteOf(r, c)
	if err != nil {
		return 0, nil, err
	}
	st, err := s.sites.Status(r.Context(), name)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, st, nil
}
