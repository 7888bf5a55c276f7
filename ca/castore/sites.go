package castore

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/store"
)

// EnrollSite issues a factory site's mTLS client certificate
// (urn:tacline:site:<name>) from the station CA key in the HSM, records the
// site at headquarters with the certificate's serial and s's checkpoint
// verifier key, and writes the credentials to credsDir/site-<name>
// (cert.pem with the CA, key.pem). Re-enrolling issues a new certificate:
// the old one is refused from then on. docs/sites.md.
func EnrollSite(ctx context.Context, db *store.DB, tok *hsm.Token, s store.Site, credsDir, actor string) (*x509.Certificate, error) {
	caCert, _, caSigner, err := ActiveCA(ctx, db, tok, store.IssuerStation)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.StationCert(caCert, caSigner, nil, ca.Station{Site: s.Name}, ca.ValidFor(time.Now(), 2*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	s.CertSerial = cert.SerialNumber.Text(16)
	if err := db.EnrollSite(ctx, s, actor); err != nil {
		return nil, err
	}
	if err := WriteKeyPair(filepath.Join(credsDir, "site-"+s.Name), append(PEM(cert), PEM(caCert)...), key); err != nil {
		return nil, err
	}
	return cert, nil
}
