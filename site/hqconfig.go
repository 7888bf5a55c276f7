package site

import (
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// HQConfig is the `hq:` section: headquarters' side of sites.
type HQConfig struct {
	Lease LeasePolicy `yaml:"lease" doc:"the leases headquarters grants to sites (docs/sites.md)"`
}

// LeasePolicy bounds the leases HQ grants, whether a site asks
// (POST /v1/sites/{site}/leases) or an operator runs `tacline lease grant`.
type LeasePolicy struct {
	MaxSize    int64         `yaml:"max_size" doc:"most SNRs in one lease (1 to 1000000; default 100000); a site's site.pools[].lease_size must not exceed it"`
	DefaultTTL time.Duration `yaml:"default_ttl" doc:"lifetime of a lease a site asks for, and of lease grant without --ttl (default 720h)"`
	MaxTTL     time.Duration `yaml:"max_ttl" doc:"longest lifetime of a lease (at least default_ttl; default 2160h)"`
	MaxHeld    int           `yaml:"max_held" doc:"most leases of one pool a site holds at once, not returned and not expired (default 4)"`
}

// DefaultLeasePolicy is the hq.lease section's defaults.
func DefaultLeasePolicy() LeasePolicy {
	return LeasePolicy{MaxSize: 100000, DefaultTTL: 30 * 24 * time.Hour, MaxTTL: 90 * 24 * time.Hour, MaxHeld: 4}
}

// Validate names the first wrong field.
func (p LeasePolicy) Validate() error {
	switch {
	case p.MaxSize < 1 || p.MaxSize > imei.SNRsPerTAC:
		return tacerr.Field(tacerr.InvalidConfig, "hq.lease.max_size", "must be between 1 and 1000000 (the SNRs of one TAC), got %d", p.MaxSize)
	case p.DefaultTTL < time.Minute:
		return tacerr.Field(tacerr.InvalidConfig, "hq.lease.default_ttl", "must be at least 1m, got %s", p.DefaultTTL)
	case p.MaxTTL < p.DefaultTTL:
		return tacerr.Field(tacerr.InvalidConfig, "hq.lease.max_ttl", "must be at least hq.lease.default_ttl (%s), got %s", p.DefaultTTL, p.MaxTTL)
	case p.MaxHeld < 1:
		return tacerr.Field(tacerr.InvalidConfig, "hq.lease.max_held", "must be at least 1, got %d", p.MaxHeld)
	}
	return nil
}

// Limits are the policy's bounds on one grant.
func (p LeasePolicy) Limits() store.LeaseLimits {
	return store.LeaseLimits{MaxSize: p.MaxSize, MaxTTL: p.MaxTTL, MaxHeld: p.MaxHeld}
}
