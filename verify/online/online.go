// Package online runs authenticity checks against the ledger: it issues
// single-use challenge nonces (stored in the ledger, so every replica
// accepts a nonce any replica issued, and only once), verifies a device's
// answer with package verify plus the ledger checks (the certificate was
// issued by this ledger, the IMEI is bound to it, neither is revoked), and
// answers the public IMEI lookup with nothing personal in it.
package online

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/revocation"
)

// Config tunes the online checks.
type Config struct {
	// ChallengeTTL is how long a challenge nonce may be answered.
	ChallengeTTL time.Duration `yaml:"challenge_ttl" doc:"how long a challenge nonce may be answered (1s to 1h)"`
}

// DefaultConfig: challenges live 2 minutes.
func DefaultConfig() Config { return Config{ChallengeTTL: 2 * time.Minute} }

// Validate names the first wrong field.
func (c Config) Validate() error {
	if c.ChallengeTTL < time.Second || c.ChallengeTTL > time.Hour {
		return tacerr.Field(tacerr.InvalidConfig, "authenticity.challenge_ttl", "must be between 1s and 1h (default 2m), got %s", c.ChallengeTTL)
	}
	return nil
}

// NonceBytes is the size of a challenge nonce.
const NonceBytes = 32

// Service checks devices against the ledger.
type Service struct {
	db    *store.DB
	trust atomic.Pointer[verify.Trust] // replaced whole by SetTrust
	cfg   Config
}

// New builds the service; its trust anchors are the self-signed roots in
// the chains of the ledger's device issuers.
func New(ctx context.Context, db *store.DB, cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	trust, err := LedgerTrust(ctx, db)
	if err != nil {
		return nil, err
	}
	s := &Service{db: db, cfg: cfg}
	s.trust.Store(trust)
	return s, nil
}

// LedgerTrust returns the trust of the ledger's device issuers: their
// certificates and chains, the self-signed ones as anchors.
func LedgerTrust(ctx context.Context, db *store.DB) (*verify.Trust, error) {
	recs, err := db.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	return TrustOf(recs)
}

// TrustOf returns the trust of the device and root issuers among recs (the
// ledger's issuers table, as LedgerTrust reads it). A revoked device
// issuing CA (`tacline ca revoke`) is marked revoked: its devices get the
// verdict revoked.
func TrustOf(recs []store.IssuerRecord) (*verify.Trust, error) {
	var certs, revoked []*x509.Certificate
	for _, r := range recs {
		if r.Kind != store.IssuerDevice && r.Kind != store.IssuerRoot {
			continue
		}
		for i, p := range []string{r.CertPEM, r.ChainPEM} {
			if p == "" {
				continue
			}
			cs, err := ca.ParseChainPEM([]byte(p))
			if err != nil {
				return nil, tacerr.Wrap(tacerr.Internal, err, "certificates of issuer %s", r.Label)
			}
			if i == 0 && !r.RevokedAt.IsZero() {
				revoked = append(revoked, cs[0])
				continue
			}
			certs = append(certs, cs...)
		}
	}
	t, err := verify.NewTrust(certs)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "the ledger holds no device root: run the key ceremony first")
	}
	return t.WithRevokedCAs(revoked), nil
}

// Trust returns the service's trust anchors.
func (s *Service) Trust() *verify.Trust { return s.trust.Load() }

// SetTrust replaces the trust anchors (a server that saw a new issuer in
// the ledger); checks in progress finish with the trust they started with.
func (s *Service) SetTrust(t *verify.Trust) { s.trust.Store(t) }

// Challenge is a single-use nonce.
type Challenge struct {
	Nonce     string    `json:"nonce"` // hex
	ExpiresAt time.Time `json:"expires_at"`
}

// NewChallenge issues a nonce for client (recorded for the audit trail).
func (s *Service) NewChallenge(ctx context.Context, client string) (Challenge, error) {
	b := make([]byte, NonceBytes)
	if _, err := rand.Read(b); err != nil {
		return Challenge{}, tacerr.Wrap(tacerr.Internal, err, "draw a nonce")
	}
	exp := s.db.Now().Add(s.cfg.ChallengeTTL).Truncate(time.Second)
	if err := s.db.InsertChallenge(ctx, b, client, exp); err != nil {
		return Challenge{}, err
	}
	return Challenge{Nonce: hex.EncodeToString(b), ExpiresAt: exp}, nil
}

// Verify parses req, consumes its nonce (unknown, expired and used nonces
// are refused) and checks the device against the ledger.
func (s *Service) Verify(ctx context.Context, req verify.Request) (verify.Result, error) {
	in, err := req.Parse()
	if err != nil {
		return verify.Result{}, err
	}
	if err := s.db.UseChallenge(ctx, in.Nonce); err != nil {
		return verify.Result{}, err
	}
	in.At = s.db.Now()
	return verify.Check(ctx, in, s.trust.Load(), nil, Ledger{DB: s.db})
}

// Lookup is the public answer about an IMEI: nothing personal (no device
// serial, no station, no dates).
type Lookup struct {
	IMEI   string `json:"imei"`
	Status string `json:"status"` // registered | voided | revoked | unknown
	Brand  string `json:"brand,omitempty"`
	Model  string `json:"model,omitempty"`
}

// Lookup answers the public lookup of m.
func (s *Service) Lookup(ctx context.Context, m imei.IMEI) (Lookup, error) {
	out := Lookup{IMEI: m.String(), Status: "unknown"}
	rec, err := s.db.LookupIMEI(ctx, m)
	switch {
	case tacerr.Is(err, tacerr.NotFound):
		return out, nil
	case err != nil:
		return Lookup{}, err
	}
	switch rec.State {
	case store.StateBound:
		out.Status = "registered"
	case store.StateVoided:
		out.Status = "voided"
	case store.StateRevoked:
		out.Status = "revoked"
	default:
		return out, nil // reserved, not a device yet
	}
	tac, err := s.db.TAC(ctx, m.TAC())
	if err == nil {
		out.Brand, out.Model = tac.Brand, tac.ModelName
	} else if !tacerr.Is(err, tacerr.NotFound) && !tacerr.Is(err, tacerr.TACUnknown) {
		return Lookup{}, err
	}
	return out, nil
}

// Ledger is verify.Ledger over the ledger.
type Ledger struct{ DB *store.DB }

// Certificate implements verify.Ledger.
func (l Ledger) Certificate(ctx context.Context, serialHex string) (*verify.LedgerCert, error) {
	r, err := l.DB.CertificateBySerial(ctx, serialHex)
	if err != nil || r == nil {
		return nil, err
	}
	return &verify.LedgerCert{Serial: r.Serial, DeviceSerial: r.DeviceSerial, DER: r.DER, Revoked: !r.RevokedAt.IsZero(),
		RevokeReason: r.RevokeReason, RevokedAt: r.RevokedAt}, nil
}

// IMEI implements verify.Ledger.
func (l Ledger) IMEI(ctx context.Context, m imei.IMEI) (*verify.LedgerIMEI, error) {
	r, err := l.DB.LookupIMEI(ctx, m)
	if tacerr.Is(err, tacerr.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &verify.LedgerIMEI{State: r.State, CertSerial: r.CertSerial, Reason: r.Reason}, nil
}

// KnowsTAC implements verify.Ledger.
func (l Ledger) KnowsTAC(ctx context.Context, tac uint32) (bool, error) {
	_, err := l.DB.TAC(ctx, tac)
	switch {
	case err == nil:
		return true, nil
	case tacerr.Is(err, tacerr.NotFound), tacerr.Is(err, tacerr.TACUnknown):
		return false, nil
	}
	return false, err
}

var _ verify.Ledger = Ledger{}

// Authority is the whole authenticity side of a server: checks and lookup
// (Service), CRLs and OCSP (revocation.Publisher).
type Authority struct {
	*Service
	*revocation.Publisher
}

// NewAuthority builds the authenticity side of a server over the ledger:
// the online checks and a CRL publisher for issuers (whose keys the server
// found in its HSM). The server replaces both the trust (Service.SetTrust)
// and the issuers (Publisher.SetIssuers) when the ledger's issuers change.
func NewAuthority(ctx context.Context, db *store.DB, issuers []revocation.Issuer, cfg Config, rc revocation.Config, log *slog.Logger) (Authority, error) {
	if len(issuers) == 0 {
		return Authority{}, tacerr.New(tacerr.InvalidConfig, "no device issuer with a key in the HSM: run the key ceremony first (`tacline ca init --dev`)")
	}
	svc, err := New(ctx, db, cfg)
	if err != nil {
		return Authority{}, err
	}
	pub, err := revocation.NewPublisher(db, issuers, rc, log)
	if err != nil {
		return Authority{}, err
	}
	return Authority{Service: svc, Publisher: pub}, nil
}

// Run keeps CRLs fresh (see revocation.Publisher.Run) and purges expired
// challenges every minute, until ctx ends.
func (a Authority) Run(ctx context.Context) {
	go a.Publisher.Run(ctx)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Keep used and expired nonces a while: a replay soon after
			// expiry is then reported as such.
			_, _ = a.db.PurgeChallenges(ctx, a.db.Now().Add(-time.Hour))
		}
	}
}
