package verify

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// ReasonNames are the RFC 5280 CRLReason names by code (code 7 is unused).
var ReasonNames = map[int]string{
	0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn", 10: "aACompromise",
}

// CRLSet is a Revocation source over CRLs (offline checks). A CRL applies
// to a certificate when its issuer name is the certificate's issuer and its
// signature verifies with the issuer's key.
type CRLSet struct {
	crls []*x509.RevocationList
	// revoked holds the revoked serials (ledger hex form) of each CRL.
	revoked []map[string]x509.RevocationListEntry
}

// NewCRLSet builds a source over crls.
func NewCRLSet(crls []*x509.RevocationList) *CRLSet {
	s := &CRLSet{crls: crls, revoked: make([]map[string]x509.RevocationListEntry, len(crls))}
	for i, l := range crls {
		m := make(map[string]x509.RevocationListEntry, len(l.RevokedCertificateEntries))
		for _, e := range l.RevokedCertificateEntries {
			m[hex.EncodeToString(e.SerialNumber.Bytes())] = e
		}
		s.revoked[i] = m
	}
	return s
}

// Status implements Revocation. The CRLs that decide are those naming the
// certificate's issuer whose signature verifies with the issuer's key. A
// CRL that names the issuer but is signed by another key is passed over
// when one that verifies is given too (two manufacturers' CAs may have the
// same names); when none does, it is an error (a forged or corrupted CRL).
// No applicable CRL, or a CRL past its nextUpdate, leaves the status
// undecided.
func (s *CRLSet) Status(_ context.Context, cert, issuer *x509.Certificate, at time.Time) (RevocationStatus, error) {
	serial := SerialHex(cert)
	found, current := false, false
	var expired time.Time
	var forged error
	for i, l := range s.crls {
		if string(l.RawIssuer) != string(cert.RawIssuer) {
			continue
		}
		if err := l.CheckSignatureFrom(issuer); err != nil {
			forged = tacerr.Wrap(tacerr.InvalidInput, err, "a CRL names issuer %s but its signature does not verify with that issuer's key, and no CRL given does: it is forged or corrupt (or another CA's of the same name); fetch the issuer's CRL again", issuer.Subject)
			continue
		}
		found = true
		if e, ok := s.revoked[i][serial]; ok {
			return RevocationStatus{Revoked: true, Reason: ReasonNames[e.ReasonCode], RevokedAt: e.RevocationTime}, nil
		}
		if l.NextUpdate.IsZero() || !at.After(l.NextUpdate) {
			current = true
		} else {
			expired = l.NextUpdate
		}
	}
	switch {
	case !found && forged != nil:
		return RevocationStatus{}, forged
	case !found:
		return RevocationStatus{Undecided: "no CRL of the issuer " + issuer.Subject.String() + " was given: pass its CRL with --crl"}, nil
	case !current:
		return RevocationStatus{Undecided: "the CRL of " + issuer.Subject.String() + " expired at " + expired.UTC().Format(time.RFC3339) + ": fetch a fresh one (tacline crl publish, or /v1/crl/)"}, nil
	}
	return RevocationStatus{}, nil
}
