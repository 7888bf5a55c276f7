package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// RevocationChecker reports whether a client certificate was revoked by
// its CA (step-ca station identities: stepca.CRLWatcher reads step-ca's
// CRL).
type RevocationChecker interface {
	Revoked(cert *x509.Certificate) (at time.Time, revoked bool)
}

// verified is a client certificate's chains, cached until a minute has
// passed or the certificate expires, whichever is first.
type verified struct {
	chains [][]*x509.Certificate
	until  time.Time
}

// maxVerifiedCache bounds the cache of verified client certificates.
const maxVerifiedCache = 4096

// chains verifies the client certificate of cs against every trusted
// client CA. The TLS handshake only requests a certificate (so that an
// expired or unknown one reaches this point and gets a 401 naming the
// cause, not a bare TLS alert); each certificate is verified once a
// minute at most.
func (id *identifier) chains(cs *tls.ConnectionState) ([][]*x509.Certificate, error) {
	if cs == nil || (len(cs.VerifiedChains) == 0 && len(cs.PeerCertificates) == 0) {
		return nil, tacerr.New(tacerr.Unauthorized, "a client certificate issued by a CA this server trusts is required: connect with --cert/--key (station certificates come from `tacline station enroll`)")
	}
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		return cs.VerifiedChains, nil
	}
	if id.roots == nil {
		return nil, tacerr.New(tacerr.Unauthorized, "client certificate not verified")
	}
	leaf := cs.PeerCertificates[0]
	now := time.Now()
	id.mu.RLock()
	v, ok := id.cache[string(leaf.Raw)]
	id.mu.RUnlock()
	if ok && now.Before(v.until) {
		return v.chains, nil
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: id.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, certError(leaf, err, now)
	}
	until := now.Add(time.Minute)
	if leaf.NotAfter.Before(until) {
		until = leaf.NotAfter
	}
	id.mu.Lock()
	if id.cache == nil || len(id.cache) >= maxVerifiedCache {
		id.cache = make(map[string]verified)
	}
	id.cache[string(leaf.Raw)] = verified{chains: chains, until: until}
	id.mu.Unlock()
	return chains, nil
}

// certError names why a client certificate does not verify.
func certError(leaf *x509.Certificate, err error, now time.Time) error {
	name := leaf.Subject.CommonName
	var inv x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.After(leaf.NotAfter):
		return tacerr.New(tacerr.Unauthorized, "client certificate %q (serial %x) expired at %s: a step-ca station identity renews itself while the station client runs; otherwise bootstrap or enroll the station again",
			name, leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
	case errors.As(err, &inv) && inv.Reason == x509.Expired && now.Before(leaf.NotBefore):
		return tacerr.New(tacerr.Unauthorized, "client certificate %q (serial %x) is not valid before %s: check the station's clock",
			name, leaf.SerialNumber, leaf.NotBefore.UTC().Format(time.RFC3339))
	case errors.As(err, &inv):
		return tacerr.New(tacerr.Unauthorized, "client certificate %q (serial %x) does not verify: %v", name, leaf.SerialNumber, inv)
	case errors.As(err, &ua):
		return tacerr.New(tacerr.Unauthorized, "client certificate %q is issued by %q, which this server does not trust (server.client_ca, mapped_ca, stepca_station_ca)", name, leaf.Issuer.String())
	}
	return tacerr.New(tacerr.Unauthorized, "client certificate %q does not verify: %v", name, err)
}
