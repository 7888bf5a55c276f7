package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// StepCALabelPrefix starts the ledger label of a device issuer whose
// certificates an upstream step-ca signs (its key is step-ca's, not in
// tacline's HSM).
const StepCALabelPrefix = "stepca:"

// IsStepCALabel reports whether an issuer label names a step-ca issuer.
func IsStepCALabel(label string) bool { return strings.HasPrefix(label, StepCALabelPrefix) }

// openStepCA builds the RA whenever the configuration has a stepca
// section (its token-signing key from the HSM), nil without one. For issuer
// kind stepca it also makes step-ca's issuing CA the ledger's active device
// issuer: recorded if new, activated if another issuer is active. For
// issuer kind hsm the RA only serves the step-ca issuers the ledger already
// has, retired (loadStepCA): replays of their requests and revocations at
// step-ca after a switch back to an HSM issuer.
func openStepCA(ctx context.Context, cfg *config.File, s *Server) (*stepca.RA, error) {
	if !cfg.HasStepCA() {
		return nil, nil
	}
	key, err := s.Token.Signer(cfg.StepCA.KeyLabel)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.HSMKeyNotFound, err, "stepca.key_label %q: make the RA key with `tacline hsm keygen --label %s --type p256`",
			cfg.StepCA.KeyLabel, cfg.StepCA.KeyLabel)
	}
	ra, err := stepca.New(cfg.StepCA, key)
	if err != nil {
		return nil, err
	}
	if cfg.Issuer.Kind != config.IssuerStepCA {
		return ra, nil
	}
	inter := ra.IssuerCertificate()
	keyID := ca.KeyID(inter)
	recs, err := s.DB.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.KeyID != keyID {
			continue
		}
		if !r.Active {
			if err := s.DB.ActivateIssuer(ctx, keyID, "stepca"); err != nil {
				return nil, err
			}
			s.log.Info("step-ca's issuing CA is now the active device issuer", "key_id", keyID)
		}
		return ra, nil
	}
	rec := store.IssuerRecord{KeyID: keyID, Label: StepCALabelPrefix + keyID[:min(16, len(keyID))], Kind: store.IssuerDevice,
		Curve: ca.CurveName(inter.PublicKey), CertPEM: string(ca.ChainPEM(inter)), ChainPEM: string(ca.ChainPEM(ra.Root())), Active: true}
	if err := s.DB.AddIssuer(ctx, rec, "stepca"); err != nil {
		return nil, err
	}
	s.log.Info("step-ca's issuing CA recorded as the active device issuer", "key_id", keyID, "subject", inter.Subject.String(), "url", cfg.StepCA.URL)
	return ra, nil
}

// upstreamMetric is the alert counter of upstream CA failures.
func upstreamMetric(reg prometheus.Registerer, svc *provisioner.Service) error {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tacline_upstream_ca_failures_total",
		Help: "Failures of the upstream CA (step-ca) by reason: unreachable, refused, timeout, server_error, mismatch, revoke_failed. Alert on any but unreachable.",
	}, []string{"reason"})
	if err := reg.Register(c); err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "register the upstream CA metric")
	}
	svc.SetUpstreamObserver(func(reason string) { c.WithLabelValues(reason).Inc() })
	return nil
}

// stationCRL builds the watcher of step-ca's CRL for step-ca station
// identities (server.stepca_crl), nil when none is configured.
func stationCRL(cfg *config.File) (*stepca.CRLWatcher, error) {
	if cfg.Server.StepCACRL == "" {
		return nil, nil
	}
	roots := x509.NewCertPool()
	for i, f := range cfg.Server.StepCAStationCA {
		certs, err := pemblock.CertFile(f, tacerr.InvalidConfig, fmt.Sprintf("server.stepca_station_ca[%d]", i))
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	return stepca.NewCRLWatcher(cfg.Server.StepCACRL, roots), nil
}

// runStationCRL reads step-ca's CRL every server.stepca_crl_refresh
// (default 1m) until ctx ends.
func (s *Server) runStationCRL(ctx context.Context) {
	if s.stationCRL == nil {
		return
	}
	every := s.cfg.Server.StepCACRLRefresh
	if every == 0 {
		every = time.Minute
	}
	s.stationCRL.Run(ctx, every, func(format string, args ...any) {
		s.log.Warn("step-ca CRL not read; station revocations may be stale", "err", fmt.Sprintf(format, args...))
	})
}
