// Package ca builds tacline's CA certificates over crypto.Signer values: the
// self-signed root, the issuing CA that signs device certificates, the CSR an
// issuing CA sends to a manufacturer's offline root, the station CA and the
// mTLS client certificates of factory stations. It holds no keys and no
// storage: keys stay in the HSM behind crypto.Signer, and the key ceremony
// (ceremony.go) records issuers through the small IssuerStore interface.
//
// It promises: no certificate outlives its issuer (every certificate built
// here ends no later than the certificate that signs it, and Import
// refuses a chain where one does); every CA certificate has critical
// basicConstraints CA:TRUE,
// critical keyUsage keyCertSign|cRLSign, a subjectKeyIdentifier and, below
// the root, an authorityKeyIdentifier; issuing and station CAs have pathLen 0;
// serial numbers are policy.NewSerial's (a time-ordered clock, 64 random bits); every certificate built here is checked
// against its issuer's public key before it is returned.
package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"regexp"
	"time"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// Validity is a certificate's validity period.
type Validity struct {
	NotBefore, NotAfter time.Time
}

// NoExpiry is 99991231235959Z, RFC 5280 4.1.2.5's "no well-defined
// expiration date". Device certificates end then by default (IEEE
// 802.1AR), so the device root and issuing CAs do too: a device
// certificate must not outlive its issuer.
var NoExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// UntilNoExpiry returns a period starting one hour before now and ending at
// NoExpiry.
func UntilNoExpiry(now time.Time) Validity {
	return Validity{NotBefore: now.UTC().Truncate(time.Second).Add(-time.Hour), NotAfter: NoExpiry}
}

// CheckOutlives refuses a certificate that would end after its issuer
// (code invalid_input, field validity).
func CheckOutlives(what string, notAfter time.Time, issuer *x509.Certificate) error {
	if issuer != nil && notAfter.After(issuer.NotAfter) {
		return tacerr.Field(tacerr.InvalidInput, "validity", "%s would end %s, after its issuer %q (%s): no certificate may outlive its issuer; issue the issuer until %s (IEEE 802.1AR) or shorten this certificate",
			what, notAfter.UTC().Format(time.RFC3339), issuer.Subject.CommonName, issuer.NotAfter.UTC().Format(time.RFC3339), NoExpiry.Format("20060102150405Z"))
	}
	return nil
}

// ValidFor returns a period starting one hour before now (clock skew) and
// lasting d from now.
func ValidFor(now time.Time, d time.Duration) Validity {
	now = now.UTC().Truncate(time.Second)
	return Validity{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(d)}
}

func (v Validity) check() error {
	if v.NotBefore.IsZero() || v.NotAfter.IsZero() || !v.NotAfter.After(v.NotBefore) {
		return tacerr.Field(tacerr.InvalidInput, "validity", "notAfter (%s) must be after notBefore (%s)", v.NotAfter, v.NotBefore)
	}
	return nil
}

// SelfSignedRoot makes a self-signed root CA certificate for signer.
func SelfSignedRoot(signer crypto.Signer, subject pkix.Name, v Validity) (*x509.Certificate, error) {
	tmpl, err := caTemplate(signer.Public(), subject, v, -1)
	if err != nil {
		return nil, err
	}
	return sign(tmpl, tmpl, signer.Public(), signer)
}

// IssuingCA makes the issuing CA certificate (pathLen 0) for issuingPub,
// signed by the root.
func IssuingCA(root *x509.Certificate, rootSigner crypto.Signer, issuingPub crypto.PublicKey, subject pkix.Name, v Validity) (*x509.Certificate, error) {
	return subordinate(root, rootSigner, issuingPub, subject, v)
}

// StationCA makes the CA certificate (pathLen 0) that signs station client
// certificates, signed by the root. Keep it apart from the issuing CA: a
// station certificate must never chain to the device issuer.
func StationCA(root *x509.Certificate, rootSigner crypto.Signer, stationCAPub crypto.PublicKey, subject pkix.Name, v Validity) (*x509.Certificate, error) {
	return subordinate(root, rootSigner, stationCAPub, subject, v)
}

func subordinate(parent *x509.Certificate, parentSigner crypto.Signer, pub crypto.PublicKey, subject pkix.Name, v Validity) (*x509.Certificate, error) {
	if err := checkParent(parent, parentSigner); err != nil {
		return nil, err
	}
	tmpl, err := caTemplate(pub, subject, v, 0)
	if err != nil {
		return nil, err
	}
	return sign(tmpl, parent, pub, parentSigner)
}

// CSRForKey makes the DER PKCS#10 request an issuing CA key sends to an
// offline root. The root decides the extensions; the request carries the
// subject only.
func CSRForKey(signer crypto.Signer, subject pkix.Name) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, signer)
	if err != nil {
		return nil, tacerr.Prefixed(fmt.Sprintf("sign the CSR for %q", subject), err, tacerr.HSMDeviceError)
	}
	return der, nil
}

// CheckCertMatchesKey reports whether cert certifies pub (code
// invalid_input when it does not).
func CheckCertMatchesKey(cert *x509.Certificate, pub crypto.PublicKey) error {
	k, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if cert == nil || !ok || !k.Equal(cert.PublicKey) {
		name := "<nil>"
		if cert != nil {
			name = cert.Subject.String()
		}
		return tacerr.Field(tacerr.InvalidInput, "cert", "certificate %q does not match the key in the HSM; import the certificate issued for this key's CSR", name)
	}
	return nil
}

// KeyID returns the hex subjectKeyIdentifier of cert, the key id tacline
// uses for issuers.
func KeyID(cert *x509.Certificate) string { return hex.EncodeToString(cert.SubjectKeyId) }

// CurveName names the key type of pub: P-256, P-384, P-521, Ed25519 or
// RSA-<bits>.
func CurveName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// Station identifies a factory station (or an operator holding roles).
type Station struct {
	ID      string   // station id; becomes urn:tacline:station:<ID> and the CN
	Factory string   // subject O
	Line    string   // subject OU
	Roles   []string // each becomes urn:tacline:role:<role>
	// Site names a factory site instead of a station (docs/sites.md):
	// urn:tacline:site:<Site> and the CN; ID must then be empty.
	Site string
	// Person names the one person a role certificate is for (no ID):
	// the CN is "person <Person>", which the API takes as the actor the
	// ledger and the audit log name.
	Person string
}

var (
	stationIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	personRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	roleRe      = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
)

// StationURN and RoleURN are the URI SANs of a station certificate.
func StationURN(id string) string { return "urn:tacline:station:" + id }
func RoleURN(role string) string  { return "urn:tacline:role:" + role }

// SiteURN is the URI SAN of a factory site's client certificate.
func SiteURN(site string) string { return "urn:tacline:site:" + site }

var siteRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

func (s Station) check() error {
	if s.Site != "" {
		if s.ID != "" || !siteRe.MatchString(s.Site) {
			return tacerr.Field(tacerr.InvalidInput, "site", "%q must be 1-32 lower-case letters, digits or '-', and a site certificate names no station", s.Site)
		}
		return nil
	}
	if s.ID == "" && len(s.Roles) == 0 {
		return tacerr.Field(tacerr.InvalidInput, "station.id", "a station certificate needs a station id, a role, or both")
	}
	if s.Person != "" && (s.ID != "" || !personRe.MatchString(s.Person)) {
		return tacerr.Field(tacerr.InvalidInput, "station.person", "%q must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit, on a certificate that names no station", s.Person)
	}
	if s.ID != "" && !stationIDRe.MatchString(s.ID) {
		return tacerr.Field(tacerr.InvalidInput, "station.id", "%q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", s.ID)
	}
	for i, r := range s.Roles {
		if !roleRe.MatchString(r) {
			return tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("station.roles[%d]", i), "%q must be 1-32 lower-case letters, digits, '_' or '-', starting with a letter", r)
		}
	}
	for _, f := range []struct{ name, v string }{{"station.factory", s.Factory}, {"station.line", s.Line}} {
		if len(f.v) > 64 {
			return tacerr.Field(tacerr.InvalidInput, f.name, "is %d characters long, at most 64 allowed", len(f.v))
		}
	}
	return nil
}

// StationCert makes a station's mTLS client certificate (clientAuth EKU,
// keyUsage digitalSignature, URI SANs urn:tacline:station:<ID> and
// urn:tacline:role:<role>), signed by the station CA. If pub is nil a P-256
// key is generated and returned as the second value (otherwise it is nil).
func StationCert(caCert *x509.Certificate, caSigner crypto.Signer, pub crypto.PublicKey, st Station, v Validity) (*x509.Certificate, crypto.Signer, error) {
	if err := st.check(); err != nil {
		return nil, nil, err
	}
	if err := v.check(); err != nil {
		return nil, nil, err
	}
	if err := checkParent(caCert, caSigner); err != nil {
		return nil, nil, err
	}
	key, pub, serial, skid, err := leaf(pub, "station")
	if err != nil {
		return nil, nil, err
	}
	cn := st.ID
	switch {
	case st.Site != "":
		cn = "site " + st.Site
	case st.Person != "":
		cn = "person " + st.Person
	case cn == "":
		cn = "role " + st.Roles[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             v.NotBefore,
		NotAfter:              v.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
	}
	if st.Factory != "" {
		tmpl.Subject.Organization = []string{st.Factory}
	}
	if st.Line != "" {
		tmpl.Subject.OrganizationalUnit = []string{st.Line}
	}
	var urns []string
	if st.ID != "" {
		urns = append(urns, StationURN(st.ID))
	}
	if st.Site != "" {
		urns = append(urns, SiteURN(st.Site))
	}
	for _, r := range st.Roles {
		urns = append(urns, RoleURN(r))
	}
	for _, u := range urns {
		parsed, err := url.Parse(u)
		if err != nil {
			return nil, nil, tacerr.Wrap(tacerr.InvalidInput, err, "station URN %q", u)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	cert, err := sign(tmpl, caCert, pub, caSigner)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// leaf prepares an end-entity certificate: a P-256 key generated when pub
// is nil (returned as key), a fresh serial and the subjectKeyIdentifier.
func leaf(pub crypto.PublicKey, what string) (key crypto.Signer, _ crypto.PublicKey, serial *big.Int, skid []byte, err error) {
	if pub == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, nil, nil, tacerr.Wrap(tacerr.Internal, err, "generate the %s key", what)
		}
		key, pub = k, k.Public()
	}
	if serial, err = policy.NewSerial(nil); err != nil {
		return nil, nil, nil, nil, err
	}
	if skid, err = policy.KeyID(pub); err != nil {
		return nil, nil, nil, nil, tacerr.Wrap(tacerr.InvalidInput, err, "%s public key", what)
	}
	return key, pub, serial, skid, nil
}

// caTemplate is a CA certificate template; pathLen < 0 means unconstrained.
func caTemplate(pub crypto.PublicKey, subject pkix.Name, v Validity, pathLen int) (*x509.Certificate, error) {
	if err := v.check(); err != nil {
		return nil, err
	}
	if subject.CommonName == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "subject.cn", "a CA certificate needs a common name")
	}
	serial, err := policy.NewSerial(nil)
	if err != nil {
		return nil, err
	}
	skid, err := policy.KeyID(pub)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "CA public key")
	}
	t := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             v.NotBefore.UTC(),
		NotAfter:              v.NotAfter.UTC(),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
	}
	if pathLen >= 0 {
		t.MaxPathLen = pathLen
		t.MaxPathLenZero = pathLen == 0
	}
	return t, nil
}

func checkParent(parent *x509.Certificate, signer crypto.Signer) error {
	if parent == nil || signer == nil {
		return tacerr.New(tacerr.InvalidInput, "the issuing certificate and its signer are required")
	}
	if !parent.IsCA || parent.KeyUsage&x509.KeyUsageCertSign == 0 {
		return tacerr.Field(tacerr.InvalidInput, "parent", "certificate %q is not a CA allowed to sign certificates", parent.Subject)
	}
	return CheckCertMatchesKey(parent, signer.Public())
}

// sign signs tmpl under parent and checks the result against the parent's
// key; a certificate that would outlive its parent is refused.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	if parent.Raw != nil {
		if err := CheckOutlives(fmt.Sprintf("certificate %q", tmpl.Subject.CommonName), tmpl.NotAfter, parent); err != nil {
			return nil, err
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, tacerr.Prefixed(fmt.Sprintf("sign certificate %q", tmpl.Subject), err, tacerr.HSMDeviceError)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "parse certificate %q", tmpl.Subject)
	}
	if err := cert.CheckSignatureFrom(parentOrSelf(parent, cert)); err != nil {
		return nil, tacerr.Wrap(tacerr.HSMDeviceError, err, "certificate %q does not verify under its issuer", tmpl.Subject)
	}
	return cert, nil
}

func parentOrSelf(parent, cert *x509.Certificate) *x509.Certificate {
	if parent.Raw == nil { // self-signed: parent was the template
		return cert
	}
	return parent
}

// ChainPEM encodes certificates as concatenated PEM "CERTIFICATE" blocks.
func ChainPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// ParseChainPEM decodes one or more PEM "CERTIFICATE" blocks and nothing
// else but whitespace (internal/pemblock's rules: text outside the blocks,
// such as the "subject=" lines openssl writes, is refused with its line).
// Errors are invalid_input on field cert.
func ParseChainPEM(data []byte) ([]*x509.Certificate, error) {
	return pemblock.Certificates(data, tacerr.InvalidInput, "cert")
}
