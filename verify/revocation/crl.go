// Package revocation publishes the revocation status of device
// certificates: one RFC 5280 CRL per device issuer, signed by the issuer's
// key in the HSM with a CRL number that only grows (allocated in the
// ledger, so replicas never reuse one), one CRL per root whose key is in
// the HSM (covering the CA certificates it signed), and RFC 6960 / RFC 5019
// OCSP responses signed by a delegated responder certificate per issuer
// (EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck, a few days' validity, key
// made in the HSM and renewed at half-life by the running publisher): an
// issuing CA's keyUsage is keyCertSign|cRLSign only, so it never signs
// OCSP responses itself.
//
// The Publisher keeps the ledger's CRLs fresh: it regenerates an issuer's
// CRL shortly after revocations (debounced, so a burst of revocations makes
// one CRL) and before the current CRL's nextUpdate. Every replica may run
// one; the ledger keeps the highest-numbered CRL.
package revocation

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"github.com/tacline/tacline/lifecycle"
	"math/big"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Config tunes CRLs and OCSP responses.
type Config struct {
	// NextUpdate is how long a CRL or OCSP response is valid (nextUpdate =
	// thisUpdate + NextUpdate); CRLs are regenerated at half-life.
	NextUpdate time.Duration `yaml:"next_update" doc:"validity of a CRL or OCSP response (CRLs are regenerated at half-life)"`
	// Debounce is how long the publisher waits after it sees a revocation
	// before it signs a new CRL (later revocations join the same CRL).
	Debounce time.Duration `yaml:"debounce" doc:"wait after a revocation before signing a new CRL"`
	// Poll is how often the publisher looks for revocations in the ledger.
	Poll time.Duration `yaml:"poll" doc:"how often the publisher looks for revocations"`
	// ResponderValidity is the lifetime of a delegated OCSP responder
	// certificate; it is renewed at half-life.
	ResponderValidity time.Duration `yaml:"responder_validity" doc:"lifetime of a delegated OCSP responder certificate (key in the HSM), renewed at half-life"`
}

// DefaultConfig: CRLs valid for 24 h, regenerated 1 s after a revocation
// is seen, revocations looked for every 2 s, OCSP responder certificates
// valid for 7 days.
func DefaultConfig() Config {
	return Config{NextUpdate: 24 * time.Hour, Debounce: time.Second, Poll: 2 * time.Second, ResponderValidity: 7 * 24 * time.Hour}
}

// Validate names the first wrong field (under "revocation.").
func (c Config) Validate() error {
	switch {
	case c.NextUpdate < time.Minute:
		return tacerr.Field(tacerr.InvalidConfig, "revocation.next_update", "must be at least 1m (default 24h), got %s", c.NextUpdate)
	case c.Debounce < 0:
		return tacerr.Field(tacerr.InvalidConfig, "revocation.debounce", "must not be negative (default 1s)")
	case c.Poll < 10*time.Millisecond:
		return tacerr.Field(tacerr.InvalidConfig, "revocation.poll", "must be at least 10ms (default 2s), got %s", c.Poll)
	case c.ResponderValidity < time.Hour || c.ResponderValidity < 2*c.NextUpdate:
		return tacerr.Field(tacerr.InvalidConfig, "revocation.responder_validity", "must be at least 1h and twice revocation.next_update (default 168h), got %s", c.ResponderValidity)
	}
	return nil
}

// Issuer is a CA whose key can sign CRLs: a device issuer (whose
// delegated responders also answer OCSP) or a root (Root: its CRL covers
// the CA certificates it signed).
type Issuer struct {
	KeyID  string // hex subjectKeyIdentifier: the CRL's name
	Cert   *x509.Certificate
	Signer crypto.Signer
	Root   bool
}

// LoadIssuers returns every device issuer and root of the ledger with a
// certificate and a key that signerFor finds (an HSM label lookup). An
// issuer whose key is gone is skipped: it can no longer sign (a root kept
// offline signs its CRL offline).
func LoadIssuers(ctx context.Context, db *store.DB, signerFor func(label string) (crypto.Signer, error)) ([]Issuer, error) {
	recs, err := db.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	var out []Issuer
	for _, r := range recs {
		root := store.IsRootKind(r.Kind)
		if r.Kind != store.IssuerDevice && !root || r.CertPEM == "" {
			continue
		}
		certs, err := ca.ParseChainPEM([]byte(r.CertPEM))
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "certificate of issuer %s", r.Label)
		}
		s, err := signerFor(r.Label)
		if err != nil {
			continue
		}
		out = append(out, Issuer{KeyID: r.KeyID, Cert: certs[0], Signer: s, Root: root})
	}
	if len(out) == 0 {
		return nil, tacerr.New(tacerr.InvalidConfig, "no device issuer with a key in the HSM: run the key ceremony first (`tacline ca init --dev`)")
	}
	return out, nil
}

// Entry is one revoked certificate.
type Entry struct {
	SerialHex string
	At        time.Time
	Reason    lifecycle.RevokeReason
	CA        bool // a CA certificate: compromise is cACompromise
}

// BuildCRL signs a CRL of issuer with the given number and times; entries
// streams the revoked certificates. A signer whose key is not the issuer
// certificate's signs nothing (hsm_key_not_found): crypto/x509 checks the
// signature under the signer's own key only, and relying parties check it
// under the certificate's.
func BuildCRL(iss Issuer, number int64, thisUpdate, nextUpdate time.Time, entries func(fn func(Entry) error) error) ([]byte, int64, error) {
	if err := ca.CheckCertMatchesKey(iss.Cert, iss.Signer.Public()); err != nil {
		return nil, 0, tacerr.Wrap(tacerr.HSMKeyNotFound, err, "issuer %s: the HSM key is not the issuer certificate's key; no CRL signed: check the issuer's key label (`tacline ca list`) and the keys on the token (`tacline hsm list`)", iss.KeyID)
	}
	var list []x509.RevocationListEntry
	err := entries(func(e Entry) error {
		b, err := hex.DecodeString(e.SerialHex)
		if err != nil {
			return tacerr.Wrap(tacerr.LedgerInvariant, err, "revoked certificate serial %q is not hex", e.SerialHex)
		}
		list = append(list, x509.RevocationListEntry{SerialNumber: new(big.Int).SetBytes(b), RevocationTime: e.At.UTC(), ReasonCode: e.Reason.Code(e.CA)})
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                thisUpdate.UTC(),
		NextUpdate:                nextUpdate.UTC(),
		RevokedCertificateEntries: list,
		ExtraExtensions:           []pkix.Extension{},
	}, iss.Cert, iss.Signer)
	if err != nil {
		return nil, 0, tacerr.Prefixed("sign the CRL of issuer "+iss.KeyID, err, tacerr.HSMDeviceError)
	}
	return der, int64(len(list)), nil
}
