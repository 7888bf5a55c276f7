package verify

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// Trust is a set of manufacturer trust anchors: only self-signed
// certificates anchor a chain; other certificates given to NewTrust are
// available as intermediates.
type Trust struct {
	roots         *x509.CertPool
	intermediates *x509.CertPool
	anchors       []*x509.Certificate
	// tacs, when not nil, are the TACs the trusted manufacturers own
	// (offline). Online, the ledger's catalogue decides.
	tacs map[uint32]bool
	// revokedCAs are CA certificates (DER) revoked by their root: a chain
	// through one is revoked.
	revokedCAs map[string]bool
}

// NewTrust builds a Trust from certificates (a --trust file may hold roots
// and intermediates). It fails when none is a self-signed CA certificate.
func NewTrust(certs []*x509.Certificate) (*Trust, error) {
	t := &Trust{roots: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	for _, c := range certs {
		if isSelfSigned(c) {
			t.roots.AddCert(c)
			t.anchors = append(t.anchors, c)
		} else {
			t.intermediates.AddCert(c)
		}
	}
	if len(t.anchors) == 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "trust", "holds no self-signed CA certificate: give the manufacturer's root certificate (only self-signed certificates are trust anchors)")
	}
	return t, nil
}

// WithTACs restricts the trust to devices whose IMEI has one of these TACs
// (IMEIs of other TACs get the verdict unknown). It returns t.
func (t *Trust) WithTACs(tacs []uint32) *Trust {
	t.tacs = make(map[uint32]bool, len(tacs))
	for _, x := range tacs {
		t.tacs[x] = true
	}
	return t
}

// WithRevokedCAs marks CA certificates as revoked (online: device issuing
// CAs revoked with `tacline ca revoke`): a device whose chain passes through
// one gets the verdict revoked. They stay intermediates, so the chain still
// builds. It returns t.
func (t *Trust) WithRevokedCAs(certs []*x509.Certificate) *Trust {
	t.revokedCAs = make(map[string]bool, len(certs))
	for _, c := range certs {
		t.revokedCAs[string(c.Raw)] = true
		t.intermediates.AddCert(c)
	}
	return t
}

// Anchors returns the trust anchors.
func (t *Trust) Anchors() []*x509.Certificate { return append([]*x509.Certificate(nil), t.anchors...) }

// isSelfSigned reports whether c is a CA certificate that signs itself.
func isSelfSigned(c *x509.Certificate) bool {
	if !c.IsCA || string(c.RawIssuer) != string(c.RawSubject) {
		return false
	}
	return c.CheckSignatureFrom(c) == nil
}

func (t *Trust) knowsTAC(ctx context.Context, tac uint32, ledger Ledger) (bool, string, error) {
	if t.tacs != nil && !t.tacs[tac] {
		return false, fmt.Sprintf("TAC %s belongs to no trusted manufacturer: this check cannot vouch for the device either way", imei.FormatTAC(tac)), nil
	}
	if ledger == nil {
		return true, "", nil
	}
	ok, err := ledger.KnowsTAC(ctx, tac)
	if err != nil {
		return false, "", err
	}
	if !ok {
		return false, fmt.Sprintf("TAC %s is not in this manufacturer's catalogue: this check cannot vouch for the device either way", imei.FormatTAC(tac)), nil
	}
	return true, "", nil
}

// verified is a verified chain's issuer of the leaf and its root.
type verified struct {
	parent *x509.Certificate
	root   *x509.Certificate
}

// verifyChain verifies leaf to an anchor with extra as intermediates. It
// returns the verdict to give ("" when the chain verifies) and why.
func (t *Trust) verifyChain(leaf *x509.Certificate, extra []*x509.Certificate, at time.Time) (verified, Verdict, string) {
	inter := t.intermediates
	if len(extra) > 0 {
		inter = t.intermediates.Clone()
		for _, c := range extra {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: t.roots, Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return verified{}, Unknown, "certificate chain is outside its validity period at " + at.UTC().Format(time.RFC3339) + ": " + err.Error()
		}
		return verified{}, Counterfeit, "no chain to a trusted manufacturer root: " + err.Error()
	}
	c := chains[0]
	if len(c) < 2 {
		// The leaf is itself a trust anchor: a root is not a device.
		return verified{}, Counterfeit, "the device certificate is itself a trust anchor, not a certificate issued to a device"
	}
	if leaf.IsCA {
		return verified{}, Counterfeit, "the device certificate is a CA certificate"
	}
	for _, ca := range c[1 : len(c)-1] {
		if t.revokedCAs[string(ca.Raw)] {
			return verified{}, Revoked, "the certificate's issuing CA " + quoteSubject(ca) + " was revoked by its root"
		}
	}
	return verified{parent: c[1], root: c[len(c)-1]}, "", ""
}

func quoteSubject(c *x509.Certificate) string {
	s := c.Subject.String()
	if s == "" {
		s = "(empty subject)"
	}
	return "\"" + strings.ReplaceAll(s, "\"", "'") + "\""
}
