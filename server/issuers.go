package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
)

// issuers keeps a server's device issuers in step with the ledger's
// issuers table. Every issuer ever loaded stays loaded (intents recorded
// under it, CRLs and OCSP); the active one follows the ledger's once it
// can be loaded here. A refresh that finds nothing new costs one read of
// the issuers table.
type issuers struct {
	db  *store.DB
	tok *hsm.Token
	cfg *config.File
	log *slog.Logger
	ra  *stepca.RA // issuer kind stepca: signs for issuers labelled stepca:

	mu       sync.Mutex // one refresh at a time; guards everything below
	loaded   map[string]*loadedIssuer
	failed   map[string]failure           // key id -> why it could not be loaded
	roots    map[string]revocation.Issuer // roots whose key is in this HSM: their CRLs
	rootSeen map[string]string            // root key id -> record fingerprint tried
	active   string                       // key id new certificates are issued under
	ledger   string                       // key id the ledger marks active
	trustFP  string                       // fingerprint of the records the trust was built from
	svc      *provisioner.Service
	auth     *online.Authority
	reloaded int // issuer sets applied after start-up
}

type loadedIssuer struct {
	rec     store.IssuerRecord
	iss     *issuance.Issuer
	rev     revocation.Issuer
	retired bool // a step-ca issuing CA step-ca no longer signs under: never the active one
}

// failure is an issuer that could not be loaded: its record's fingerprint
// (a changed record is retried at once) and the error (with its code),
// logged once.
type failure struct {
	fp  string
	err error
}

// IssuerStatus is what a server knows of its device issuers.
type IssuerStatus struct {
	Active       string           // key id new certificates are issued under
	LedgerActive string           // key id the ledger marks active
	Loaded       []string         // key ids this server can sign with, sorted
	Unusable     map[string]error // key id -> why this server cannot use it (a tacerr error: its code is kept)
}

func newIssuers(db *store.DB, tok *hsm.Token, cfg *config.File, log *slog.Logger) *issuers {
	return &issuers{db: db, tok: tok, cfg: cfg, log: log, loaded: map[string]*loadedIssuer{}, failed: map[string]failure{},
		roots: map[string]revocation.Issuer{}, rootSeen: map[string]string{}}
}

func recordFP(r store.IssuerRecord) string {
	h := sha256.New()
	for _, s := range []string{r.KeyID, r.Label, r.Kind, r.CertPEM, r.ChainPEM, r.RevokedAt.String()} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// load finds the HSM key of a device issuer and builds its issuance and
// revocation issuers; the key must match the certificate (issuance.New).
func (s *issuers) load(r store.IssuerRecord) (*loadedIssuer, error) {
	certs, err := ca.ParseChainPEM([]byte(r.CertPEM))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "certificate of issuer %s", r.Label)
	}
	var chain []*x509.Certificate
	if r.ChainPEM != "" {
		if chain, err = ca.ParseChainPEM([]byte(r.ChainPEM)); err != nil {
			return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "chain of issuer %s", r.Label)
		}
	}
	if got := ca.KeyID(certs[0]); got != r.KeyID {
		return nil, tacerr.New(tacerr.InvalidConfig, "issuer %s: its certificate's key id is %s, the ledger's %s", r.Label, got, r.KeyID)
	}
	if IsStepCALabel(r.Label) {
		return s.loadStepCA(r, certs[0], chain)
	}
	signer, err := s.tok.Signer(r.Label)
	if err != nil {
		return nil, err
	}
	is, err := issuance.New(issuance.Config{IssuerCert: certs[0], Chain: chain, Signer: signer, Profile: s.cfg.Profile, Lint: s.cfg.Lint})
	if err != nil {
		return nil, err
	}
	return &loadedIssuer{rec: r, iss: is, rev: revocation.Issuer{KeyID: r.KeyID, Cert: certs[0], Signer: signer}}, nil
}

// loadStepCA builds the issuer of a step-ca issuing CA: certificates are
// built and linted here and signed by step-ca through the RA. An issuing
// CA of the same step-ca root that stepca.issuer_cert no longer names (step-ca's
// intermediate was rotated), or any of them with issuer kind hsm (tacline
// switched back to an HSM issuer, the stepca section kept), is loaded
// retired, unless the ledger marks it active: replays of its requests
// answer their stored certificates with its chain, and its certificates
// are revoked at step-ca by serial, but nothing new is signed under it
// (stepca.RA.Retired).
func (s *issuers) loadStepCA(r store.IssuerRecord, cert *x509.Certificate, chain []*x509.Certificate) (*loadedIssuer, error) {
	if s.ra == nil {
		return nil, tacerr.New(tacerr.InvalidConfig, "issuer %s is step-ca's; this server needs issuer.kind stepca with stepca.issuer_cert naming that certificate", r.Label)
	}
	var up issuance.Upstream = s.ra
	retired := s.cfg.Issuer.Kind != config.IssuerStepCA || !s.ra.IssuerCertificate().Equal(cert)
	if retired {
		if r.Active && s.cfg.Issuer.Kind != config.IssuerStepCA {
			return nil, tacerr.New(tacerr.InvalidConfig, "issuer %s is step-ca's and the ledger's active device issuer; issuer.kind is %s: set issuer.kind stepca, or activate an HSM issuer (`tacline ca rotate` or `ca import --activate`)", r.Label, s.cfg.Issuer.Kind)
		}
		if r.Active || cert.CheckSignatureFrom(s.ra.Root()) != nil {
			return nil, tacerr.New(tacerr.InvalidConfig, "issuer %s is step-ca's; this server needs issuer.kind stepca with stepca.issuer_cert naming that certificate", r.Label)
		}
		up = s.ra.Retired(cert)
	}
	is, err := issuance.New(issuance.Config{IssuerCert: cert, Chain: chain, Upstream: up, Profile: s.cfg.Profile, Lint: s.cfg.Lint})
	if err != nil {
		return nil, err
	}
	return &loadedIssuer{rec: r, iss: is, rev: revocation.Issuer{KeyID: r.KeyID, Cert: cert}, retired: retired}, nil
}

// refresh reads the ledger's issuers, loads the device issuers not loaded
// yet (an issuer that failed before is tried again if it is the ledger's
// active one, if its record changed, or if retry is set) and moves the
// active issuer to the ledger's when it is loaded. At start-up (no active
// issuer yet) an active issuer that cannot be loaded is an error; later it
// is logged and the server keeps issuing under the previous one. It
// reports whether the issuer set or the trust changed.
func (s *issuers) refresh(ctx context.Context, retry bool) (bool, error) {
	recs, err := s.db.Issuers(ctx)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	starting := s.active == ""
	changed, ledgerActive := false, ""
	var activeErr error
	for _, r := range recs {
		if store.IsRootKind(r.Kind) && r.CertPEM != "" {
			changed = s.loadRoot(r) || changed
			continue
		}
		if r.Kind != store.IssuerDevice || r.CertPEM == "" {
			continue
		}
		if r.Active {
			ledgerActive = r.KeyID
		}
		fp := recordFP(r)
		if l, ok := s.loaded[r.KeyID]; ok && recordFP(l.rec) == fp {
			continue
		}
		if f, ok := s.failed[r.KeyID]; ok && f.fp == fp && !r.Active && !retry {
			continue // an old issuer whose key is gone: tried when its record changes or on SIGHUP
		}
		l, err := s.load(r)
		if err != nil {
			if r.Active {
				activeErr = err
			}
			if f, ok := s.failed[r.KeyID]; !ok || f.fp != fp || f.err.Error() != err.Error() {
				lv := slog.LevelInfo
				if r.Active {
					lv = slog.LevelError
				}
				if !starting || r.Active {
					s.log.Log(ctx, lv, "device issuer cannot be used by this server; retrying at the next refresh",
						"issuer", r.Label, "key_id", r.KeyID, "active_in_ledger", r.Active, "err", err.Error(), "code", string(tacerr.CodeOf(err)))
				}
			}
			s.failed[r.KeyID] = failure{fp: fp, err: err}
			continue
		}
		delete(s.failed, r.KeyID)
		s.loaded[r.KeyID] = l
		changed = true
		if !starting {
			s.log.Info("device issuer loaded", "issuer", r.Label, "key_id", r.KeyID, "active_in_ledger", r.Active)
		}
	}
	s.ledger = ledgerActive
	switch {
	case ledgerActive == "" && starting:
		return false, tacerr.New(tacerr.InvalidConfig, "no active device issuer in the ledger: run `tacline ca init --dev` (development) or `tacline ca init` + `tacline ca import`")
	case ledgerActive != "" && s.loaded[ledgerActive] != nil && !s.loaded[ledgerActive].retired:
		if s.active != ledgerActive {
			if !starting {
				s.log.Info("active device issuer switched: new certificates are issued under it", "from", s.active, "to", ledgerActive,
					"issuer", s.loaded[ledgerActive].rec.Label)
			}
			s.active = ledgerActive
			changed = true
		}
	case starting:
		return false, activeErr
	}
	fp := trustFP(recs)
	if fp != s.trustFP {
		trust, err := online.TrustOf(recs)
		switch {
		case err != nil && starting:
			return false, err
		case err != nil:
			s.log.Error("the ledger's issuers give no trust anchors; keeping the previous ones", "err", err.Error())
		default:
			s.trustFP = fp
			if s.auth != nil {
				s.auth.Service.SetTrust(trust)
			}
		}
	}
	if changed && !starting {
		s.reloaded++
	}
	return changed, s.apply()
}

// loadRoot loads a root whose key is in this HSM (development), so the
// publisher signs its CRL; a root kept offline is tried once per record.
// It reports whether a root was loaded. Called with s.mu held.
func (s *issuers) loadRoot(r store.IssuerRecord) bool {
	fp := recordFP(r)
	if s.rootSeen[r.KeyID] == fp {
		return false
	}
	s.rootSeen[r.KeyID] = fp
	certs, err := ca.ParseChainPEM([]byte(r.CertPEM))
	if err != nil {
		return false
	}
	signer, err := s.tok.Signer(r.Label)
	if err != nil || ca.CheckCertMatchesKey(certs[0], signer.Public()) != nil {
		return false
	}
	s.roots[r.KeyID] = revocation.Issuer{KeyID: r.KeyID, Cert: certs[0], Signer: signer, Root: true}
	return true
}

// checkClientCAs refuses a server.client_ca or server.mapped_ca
// certificate that is a device root or device issuing CA of the ledger:
// client identities (stations, roles) come from the infrastructure
// hierarchy, and trusting a device CA for clients would let a device
// certificate pass TLS client authentication. A client CA certified by a
// device root (an environment made before the hierarchies were separated)
// is logged as a warning.
func checkClientCAs(recs []store.IssuerRecord, files map[string][]string, log *slog.Logger) error {
	device := map[string]string{} // key id -> label
	for _, r := range recs {
		if r.Kind == store.IssuerDevice || r.Kind == store.IssuerRoot {
			device[r.KeyID] = r.Label
		}
	}
	for field, list := range files {
		for i, f := range list {
			data, err := os.ReadFile(f)
			if err != nil {
				continue // api.New names the unreadable file
			}
			certs, err := ca.ParseChainPEM(data)
			if err != nil {
				continue
			}
			for _, c := range certs {
				if label, ok := device[ca.KeyID(c)]; ok {
					return tacerr.Field(tacerr.InvalidConfig, fmt.Sprintf("%s[%d]", field, i), "%s holds %q, the device CA %s: client certificates must come from the infrastructure hierarchy (the station CA under its own root), never from a device CA, or a device certificate would pass as a client",
						f, c.Subject.CommonName, label)
				}
				if label, ok := device[hex.EncodeToString(c.AuthorityKeyId)]; ok && len(c.AuthorityKeyId) > 0 {
					log.Warn("a client CA is certified by a device root: device and infrastructure identities should have separate roots (re-run the ceremony: `tacline ca init --dev` makes an infrastructure root)",
						"field", fmt.Sprintf("%s[%d]", field, i), "file", f, "device_root", label)
				}
			}
		}
	}
	return nil
}

// trustFP fingerprints the records the authenticity trust is built from.
func trustFP(recs []store.IssuerRecord) string {
	h := sha256.New()
	for _, r := range recs {
		if r.Kind == store.IssuerDevice || r.Kind == store.IssuerRoot {
			h.Write([]byte(recordFP(r)))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// apply hands the current set to the provisioner and the CRL publisher
// (once they exist). Called with s.mu held.
func (s *issuers) apply() error {
	if s.svc != nil {
		if err := s.svc.SetIssuers(s.issuanceSet(), s.active); err != nil {
			return err
		}
	}
	if s.auth != nil && s.auth.Publisher != nil {
		s.auth.Publisher.SetIssuers(s.revocationSet())
	}
	return nil
}

func (s *issuers) issuanceSet() map[string]*issuance.Issuer {
	out := make(map[string]*issuance.Issuer, len(s.loaded))
	for k, l := range s.loaded {
		out[k] = l.iss
	}
	return out
}

// revocationSet lists the loaded issuers, newest first (as the ledger
// lists them).
func (s *issuers) revocationSet() []revocation.Issuer {
	ls := make([]*loadedIssuer, 0, len(s.loaded))
	for _, l := range s.loaded {
		ls = append(ls, l)
	}
	slices.SortFunc(ls, func(a, b *loadedIssuer) int {
		if c := b.rec.CreatedAt.Compare(a.rec.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.rec.KeyID, b.rec.KeyID)
	})
	out := make([]revocation.Issuer, 0, len(ls)+len(s.roots))
	for _, l := range ls {
		if l.rev.Signer != nil { // step-ca issuers: step-ca publishes their revocations
			out = append(out, l.rev)
		}
	}
	roots := slices.Sorted(maps.Keys(s.roots))
	for _, k := range roots {
		out = append(out, s.roots[k])
	}
	return out
}

// status reports the current state.
func (s *issuers) status() IssuerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := IssuerStatus{Active: s.active, LedgerActive: s.ledger, Unusable: map[string]error{}}
	for k := range s.loaded {
		st.Loaded = append(st.Loaded, k)
	}
	slices.Sort(st.Loaded)
	for k, f := range s.failed {
		st.Unusable[k] = f.err
	}
	return st
}

// register adds the issuer gauges to reg.
func (s *issuers) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tacline_device_issuers_loaded",
			Help: "Device issuers this server can sign with (the active one and older ones kept for replays, CRLs and OCSP).",
		}, func() float64 { return float64(len(s.status().Loaded)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tacline_device_issuers_unusable",
			Help: "Device issuers in the ledger this server cannot load (key missing in the HSM, certificate not matching it); see the log.",
		}, func() float64 { return float64(len(s.status().Unusable)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tacline_device_issuer_behind",
			Help: "1 while the ledger's active device issuer cannot be loaded here and the server still issues under the previous one.",
		}, func() float64 {
			st := s.status()
			if st.LedgerActive != "" && st.LedgerActive != st.Active {
				return 1
			}
			return 0
		}),
	} {
		if err := reg.Register(c); err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "register the issuer metrics")
		}
	}
	return nil
}
