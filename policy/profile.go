// Package policy holds tacline's pure decisions over plain data: which station
// may draw from which pool, the TAC approval gate, quotas, the rules a device's
// certificate signing request must meet, and the device certificate profile.
// Nothing here performs I/O, talks to the HSM or the ledger, or keeps state: a
// decision is a function of its arguments, so every caller (API, provisioner,
// CLI) gets the same answer for the same input.
//
// The device certificate profile (Profile) follows IEEE 802.1AR (IDevID) and
// the Matter device attestation certificate (DAC): the subject names the
// device by its serial number, the subjectAltName carries every IMEI of the
// device as an RFC 7254 URN and a HardwareModuleName (RFC 4108) otherName,
// and the certificate has no well-defined expiration by default
// (notAfter 99991231235959Z). Profile.Template turns a device into the exact
// x509 template the issuer signs; it promises that the same inputs (device,
// key, serial, issue time) give the same to-be-signed bytes.
package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1" // RFC 5280 §4.2.1.2 method (1) key identifier, not a security use
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/der"
	"github.com/tacline/tacline/tacerr"
)

// NoWellDefinedExpiration is the notAfter value of RFC 5280 §4.1.2.5 for a
// certificate that has no well-defined expiration date, as IEEE 802.1AR
// requires for an IDevID.
const NoWellDefinedExpiration = "99991231235959Z"

// DefaultHWType is the hwType OID used when the configuration names none. It
// is a UUID-derived OID (ITU-T X.667, arc 2.25), so it is unique without
// registration; a manufacturer should configure an OID from its own arc.
const DefaultHWType = "2.25.115025565404346014059941093972831277608"

// OIDHardwareModuleName is id-on-hardwareModuleName (RFC 4108 §5).
var OIDHardwareModuleName = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 4}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// Upper bounds from RFC 5280 Appendix A (ub-common-name, ub-organization-name;
// ub-serial-number is MaxDeviceSerial).
const (
	maxCommonName   = 64
	maxOrganization = 64
	// MaxIMEIs is the largest number of IMEIs one device certificate carries
	// (registers accept 1 to 5 per device).
	MaxIMEIs = 5
)

// Profile is the device certificate profile. Decode it with DecodeProfile (it
// starts from DefaultProfile, so omitted fields keep their defaults) and check
// it with Validate. The zero Profile is not useful.
type Profile struct {
	// CommonName is the subject CN. Empty means the device's model name.
	CommonName string `yaml:"common_name" doc:"subject CN of device certificates (empty: the model name)"`
	// HWType is the dotted OID put in the HardwareModuleName hwType field.
	HWType string `yaml:"hw_type" doc:"dotted OID put in the HardwareModuleName hwType"`
	// KeyAgreement adds keyAgreement to the (always critical) keyUsage, which
	// otherwise holds digitalSignature only.
	KeyAgreement bool `yaml:"key_agreement" doc:"add keyAgreement to keyUsage (otherwise digitalSignature only)"`
	// SubjectKeyID adds a subjectKeyIdentifier (RFC 5280 method 1).
	SubjectKeyID bool `yaml:"subject_key_id" doc:"add a subjectKeyIdentifier extension"`
	// ExtKeyUsage lists extended key usages: client_auth, server_auth,
	// code_signing, email_protection, or dotted OIDs. Empty means no
	// extendedKeyUsage extension.
	ExtKeyUsage []EKU `yaml:"ext_key_usage" doc:"extended key usages: client_auth, server_auth, code_signing, email_protection or dotted OIDs (empty: none)"`
	// Backdate is subtracted from the issue time to give notBefore, to absorb
	// clock skew on devices and verifiers.
	Backdate time.Duration `yaml:"backdate" doc:"subtracted from the issue time to give notBefore (clock skew)"`
	// NotAfter is either a GeneralizedTime "YYYYMMDDHHMMSSZ" (default
	// 99991231235959Z) or a Go duration ("87600h") counted from the issue
	// time.
	NotAfter string `yaml:"not_after" doc:"GeneralizedTime YYYYMMDDHHMMSSZ or a Go duration from the issue time"`
	// CRLDistributionPoint, OCSPURL and CAIssuersURL, when set, add a
	// cRLDistributionPoints extension and an authorityInfoAccess
	// extension (id-ad-ocsp, id-ad-caIssuers): absolute http or https
	// URLs, where "{issuer_key_id}" stands for the hex subjectKeyIdentifier
	// of the issuing CA (each issuer has its own CRL).
	CRLDistributionPoint string `yaml:"crl_distribution_point" doc:"URL of the issuing CA's CRL put in device certificates (cRLDistributionPoints); {issuer_key_id} is replaced by the issuer's key id; empty: no extension"`
	OCSPURL              string `yaml:"ocsp_url" doc:"OCSP responder URL put in device certificates (authorityInfoAccess id-ad-ocsp); {issuer_key_id} allowed; empty: none"`
	CAIssuersURL         string `yaml:"ca_issuers_url" doc:"URL of the issuing CA certificate put in device certificates (authorityInfoAccess id-ad-caIssuers); {issuer_key_id} allowed; empty: none"`
}

// IssuerKeyIDVar stands for the issuing CA's key id in the profile's URLs.
const IssuerKeyIDVar = "{issuer_key_id}"

// ForIssuer returns the profile with IssuerKeyIDVar in its URLs replaced
// by keyID (the issuing CA's hex subjectKeyIdentifier).
func (p Profile) ForIssuer(keyID string) Profile {
	for _, u := range []*string{&p.CRLDistributionPoint, &p.OCSPURL, &p.CAIssuersURL} {
		*u = strings.ReplaceAll(*u, IssuerKeyIDVar, keyID)
	}
	return p
}

// FixedNotAfter returns the notAfter of every device certificate when the
// profile gives a fixed time (the default 99991231235959Z), and false when
// it gives a duration from the issue time.
func (p Profile) FixedNotAfter() (time.Time, bool) {
	t, err := time.Parse("20060102150405Z", strings.TrimSpace(p.NotAfter))
	return t.UTC(), err == nil
}

// DefaultProfile returns the IDevID/DAC defaults: CN = model, keyUsage
// digitalSignature, SKID on, no EKU, one hour back-date, no expiration.
func DefaultProfile() Profile {
	return Profile{
		HWType:       DefaultHWType,
		SubjectKeyID: true,
		Backdate:     time.Hour,
		NotAfter:     NoWellDefinedExpiration,
	}
}

// DecodeProfile decodes a YAML profile strictly (unknown fields are errors)
// over DefaultProfile and validates it.
func DecodeProfile(data []byte) (Profile, error) {
	p := DefaultProfile()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && err != io.EOF {
		return Profile{}, tacerr.Wrap(tacerr.InvalidConfig, err, "profile: cannot decode YAML; check field names and types")
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Validate checks every field and names the first one at fault
// ("profile.hw_type").
func (p Profile) Validate() error {
	if len(p.CommonName) > maxCommonName {
		return tacerr.Field(tacerr.InvalidConfig, "profile.common_name", "is %d characters long, at most %d allowed", len(p.CommonName), maxCommonName)
	}
	if p.CommonName != "" && !der.PrintableString(p.CommonName) {
		return tacerr.Field(tacerr.InvalidConfig, "profile.common_name", "must use PrintableString characters (letters, digits, space and '()+,-./:=?)")
	}
	if _, err := cachedHWType(p.HWType); err != nil {
		return tacerr.Field(tacerr.InvalidConfig, "profile.hw_type", "must be a dotted OID such as 1.3.6.1.4.1.<your PEN>.1: %v", err)
	}
	for i, e := range p.ExtKeyUsage {
		if _, _, err := e.parse(); err != nil {
			return tacerr.Field(tacerr.InvalidConfig, fmt.Sprintf("profile.ext_key_usage[%d]", i), "%v", err)
		}
	}
	if p.Backdate < 0 || p.Backdate > 7*24*time.Hour {
		return tacerr.Field(tacerr.InvalidConfig, "profile.backdate", "must be between 0 and 168h, got %s", p.Backdate)
	}
	if _, err := p.notAfter(time.Unix(0, 0).UTC()); err != nil {
		return err
	}
	for _, u := range []struct{ field, v string }{{"profile.crl_distribution_point", p.CRLDistributionPoint},
		{"profile.ocsp_url", p.OCSPURL}, {"profile.ca_issuers_url", p.CAIssuersURL}} {
		if err := checkURL(u.field, u.v); err != nil {
			return err
		}
	}
	return nil
}

// checkURL accepts an empty string or an absolute http(s) URL of printable
// ASCII (an IA5String in the certificate) with a host.
func checkURL(field, v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(strings.ReplaceAll(v, IssuerKeyIDVar, "00"))
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return tacerr.Field(tacerr.InvalidConfig, field, "%q must be an absolute http:// or https:// URL with a host (no user or fragment)", v)
	}
	for _, r := range v {
		if r <= ' ' || r > '~' {
			return tacerr.Field(tacerr.InvalidConfig, field, "%q must be printable ASCII without spaces (percent-encode other characters)", v)
		}
	}
	return nil
}

// notAfter resolves NotAfter against the issue time.
func (p Profile) notAfter(issued time.Time) (time.Time, error) {
	s := strings.TrimSpace(p.NotAfter)
	if s == "" {
		return time.Time{}, tacerr.Field(tacerr.InvalidConfig, "profile.not_after", "is empty; use %s or a duration such as 87600h", NoWellDefinedExpiration)
	}
	if t, err := time.Parse("20060102150405Z", s); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, tacerr.Field(tacerr.InvalidConfig, "profile.not_after", "%q is neither a GeneralizedTime YYYYMMDDHHMMSSZ nor a positive duration", s)
	}
	return issued.Add(d).UTC(), nil
}

// Device is what the profile certifies about one device.
type Device struct {
	Serial       string      // the device serial: subject serialNumber and hwSerialNum
	Manufacturer string      // subject O
	Model        string      // subject CN unless the profile sets one
	IMEIs        []imei.IMEI // one URI SAN each, in this order
}

// CheckDevice checks the device fields the profile puts in the certificate
// and names the field at fault (code invalid_input).
func CheckDevice(d Device) error {
	if err := CheckDeviceSerial(d.Serial); err != nil {
		return err
	}
	checks := []struct {
		field, val string
		max        int
	}{
		{"manufacturer", d.Manufacturer, maxOrganization},
		{"model", d.Model, maxCommonName},
	}
	for _, c := range checks {
		switch {
		case c.val == "":
			return tacerr.Field(tacerr.InvalidInput, c.field, "is required")
		case len(c.val) > c.max:
			return tacerr.Field(tacerr.InvalidInput, c.field, "is %d characters long, at most %d allowed", len(c.val), c.max)
		case !der.PrintableString(c.val):
			return tacerr.Field(tacerr.InvalidInput, c.field, "must use PrintableString characters (letters, digits, space and '()+,-./:=?)")
		}
	}
	if len(d.IMEIs) == 0 || len(d.IMEIs) > MaxIMEIs {
		return tacerr.Field(tacerr.InvalidInput, "imeis", "a device has 1 to %d IMEIs, got %d", MaxIMEIs, len(d.IMEIs))
	}
	seen := make(map[imei.IMEI]bool, len(d.IMEIs))
	for i, s := range d.IMEIs {
		if seen[s] {
			return tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("imeis[%d]", i), "IMEI %s appears twice", s)
		}
		seen[s] = true
	}
	return nil
}

// Template builds the certificate template for d and pub: serial, subject,
// validity from issued, keyUsage, basicConstraints, SKID, EKU and the
// hand-marshalled subjectAltName. The issuer's fields (issuer name, AKID,
// signature algorithm) are filled in by whoever signs it. serial must be
// positive and at most 20 octets (RFC 5280 §4.1.2.2).
func (p Profile) Template(d Device, pub crypto.PublicKey, serial *big.Int, issued time.Time) (*x509.Certificate, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := CheckDevice(d); err != nil {
		return nil, err
	}
	if err := CheckSerial(serial); err != nil {
		return nil, err
	}
	if issued.IsZero() {
		return nil, tacerr.Field(tacerr.InvalidInput, "not_before", "the issue time is required")
	}
	notAfter, err := p.notAfter(issued)
	if err != nil {
		return nil, err
	}
	san, err := p.subjectAltName(d)
	if err != nil {
		return nil, err
	}
	cn := p.CommonName
	if cn == "" {
		cn = d.Model
	}
	ku := x509.KeyUsageDigitalSignature
	if p.KeyAgreement {
		ku |= x509.KeyUsageKeyAgreement
	}
	tmpl := &x509.Certificate{
		SerialNumber: new(big.Int).Set(serial),
		Subject: pkix.Name{
			SerialNumber: d.Serial,
			Organization: []string{d.Manufacturer},
			CommonName:   cn,
		},
		NotBefore:             issued.Add(-p.Backdate).UTC().Truncate(time.Second),
		NotAfter:              notAfter.Truncate(time.Second),
		KeyUsage:              ku,
		BasicConstraintsValid: true,
		IsCA:                  false,
		ExtraExtensions:       []pkix.Extension{{Id: oidSubjectAltName, Critical: false, Value: san}},
	}
	if p.CRLDistributionPoint != "" {
		tmpl.CRLDistributionPoints = []string{p.CRLDistributionPoint}
	}
	if p.OCSPURL != "" {
		tmpl.OCSPServer = []string{p.OCSPURL}
	}
	if p.CAIssuersURL != "" {
		tmpl.IssuingCertificateURL = []string{p.CAIssuersURL}
	}
	for _, e := range p.ExtKeyUsage {
		known, oid, _ := e.parse()
		if oid != nil {
			tmpl.UnknownExtKeyUsage = append(tmpl.UnknownExtKeyUsage, oid)
		} else {
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, known)
		}
	}
	if p.SubjectKeyID {
		skid, err := KeyID(pub)
		if err != nil {
			return nil, tacerr.Wrap(tacerr.CSRInvalid, err, "cannot compute the subject key identifier")
		}
		tmpl.SubjectKeyId = skid
	}
	return tmpl, nil
}

// KeyID is the RFC 5280 §4.2.1.2 method (1) key identifier: the SHA-1 of the
// subjectPublicKey BIT STRING of pub.
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		// An ECDSA key's subjectPublicKey is its uncompressed point (RFC
		// 5480 §2.2), what Bytes returns: no SPKI to encode and parse
		// again on every certificate.
		b, err := k.Bytes()
		if err != nil {
			return nil, err
		}
		sum := sha1.Sum(b)
		return sum[:], nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}

// NewSerial returns a positive, unique, time-ordered serial number of 16
// octets: 8 octets of a process-wide clock (Unix nanoseconds, strictly
// increasing from one call to the next, so serials drawn in one process
// never repeat and sort in the order they were drawn) then 64 bits read from
// r (crypto/rand.Reader when nil), the CA/Browser Forum's minimum of CSPRNG
// output. Serials ordered in time append to the ledger's serial indexes
// (certificates.serial, issuances.cert_serial) instead of inserting at a
// random place: past the writer's page cache every random insert dirtied a
// leaf page of its own per commit (docs/benchmarks.md, "A growing ledger").
// The clock's first octet is 0x18 from late 2024, 0x19 from 2027, and
// below 0x80 until 2262, so the DER INTEGER needs no leading zero octet
// and the hex form keeps 32 digits.
func NewSerial(r io.Reader) (*big.Int, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(r, b[8:]); err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "read random serial number")
	}
	binary.BigEndian.PutUint64(b[:8], serialClock.next(time.Now().UnixNano()))
	return new(big.Int).SetBytes(b[:]), nil
}

// serialClock is NewSerial's strictly increasing clock.
var serialClock monotonic

type monotonic struct{ last atomic.Int64 }

// next returns max(now, the previous value + 1).
func (m *monotonic) next(now int64) uint64 {
	for {
		prev := m.last.Load()
		v := max(now, prev+1)
		if m.last.CompareAndSwap(prev, v) {
			return uint64(v)
		}
	}
}

// CheckSerial accepts a positive serial number of at most 20 DER octets.
func CheckSerial(serial *big.Int) error {
	if serial == nil || serial.Sign() <= 0 {
		return tacerr.Field(tacerr.InvalidInput, "serial", "the certificate serial number must be positive")
	}
	der, err := asn1.Marshal(serial)
	if err != nil || len(der)-2 > 20 {
		return tacerr.Field(tacerr.InvalidInput, "serial", "the certificate serial number must fit in 20 octets (RFC 5280 §4.1.2.2)")
	}
	return nil
}

// subjectAltName marshals GeneralNames: one uniformResourceIdentifier per
// IMEI, then the HardwareModuleName otherName. crypto/x509 cannot express
// otherName, so the whole extension is built here.
func (p Profile) subjectAltName(d Device) ([]byte, error) {
	hwType, err := cachedHWType(p.HWType)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidConfig, "profile.hw_type", "%v", err)
	}
	var names []asn1.RawValue
	for _, m := range d.IMEIs {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(m.URN())})
	}
	hmn, err := asn1.Marshal(struct {
		HWType      asn1.RawValue
		HWSerialNum []byte
	}{hwType, []byte(d.Serial)})
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "marshal HardwareModuleName")
	}
	value, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: hmn})
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "marshal otherName value")
	}
	otherName := append(append(make([]byte, 0, len(hmnTypeID)+len(value)), hmnTypeID...), value...)
	names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: otherName})
	der, err := asn1.Marshal(names)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "marshal subjectAltName")
	}
	return der, nil
}

// HardwareModuleName is the RFC 4108 otherName found in a certificate.
type HardwareModuleName struct {
	HWType      x509.OID // may have arcs beyond int (2.25 UUID OIDs)
	HWSerialNum []byte
}

// ParseHardwareModuleNames returns the HardwareModuleName otherNames in the
// subjectAltName of cert (crypto/x509 drops otherNames when parsing).
func ParseHardwareModuleNames(cert *x509.Certificate) ([]HardwareModuleName, error) {
	var out []HardwareModuleName
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var names []asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &names); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("subjectAltName: malformed GeneralNames")
		}
		for _, n := range names {
			if n.Class != asn1.ClassContextSpecific || n.Tag != 0 {
				continue
			}
			var on struct {
				TypeID asn1.ObjectIdentifier
				Value  asn1.RawValue `asn1:"explicit,tag:0"`
			}
			if _, err := asn1.UnmarshalWithParams(n.FullBytes, &on, "tag:0"); err != nil {
				return nil, fmt.Errorf("subjectAltName: malformed otherName: %v", err)
			}
			if !on.TypeID.Equal(OIDHardwareModuleName) {
				continue
			}
			var raw struct {
				HWType      asn1.RawValue
				HWSerialNum []byte
			}
			if rest, err := asn1.Unmarshal(on.Value.Bytes, &raw); err != nil || len(rest) != 0 ||
				raw.HWType.Class != asn1.ClassUniversal || raw.HWType.Tag != asn1.TagOID {
				return nil, fmt.Errorf("subjectAltName: malformed HardwareModuleName")
			}
			var h HardwareModuleName
			if err := h.HWType.UnmarshalBinary(raw.HWType.Bytes); err != nil {
				return nil, fmt.Errorf("subjectAltName: HardwareModuleName hwType: %v", err)
			}
			h.HWSerialNum = raw.HWSerialNum
			out = append(out, h)
		}
	}
	return out, nil
}

// hmnTypeID is the DER of OIDHardwareModuleName, the otherName's type-id.
var hmnTypeID = func() []byte {
	b, err := asn1.Marshal(OIDHardwareModuleName)
	if err != nil {
		panic(err)
	}
	return b
}()

// hwTypes keeps hwTypeOID's answer for each hw_type a profile named (a
// server has a few profiles): parsing the dotted OID again for every
// certificate, twice (Template validates the profile, then builds the
// subjectAltName; big integers for a 2.25 UUID arc), was 1.3 % of the
// bytes a device allocated. Only valid OIDs are kept; the values are only
// read.
var hwTypes sync.Map // string -> asn1.RawValue

func cachedHWType(s string) (asn1.RawValue, error) {
	if v, ok := hwTypes.Load(s); ok {
		return v.(asn1.RawValue), nil
	}
	r, err := hwTypeOID(s)
	if err != nil {
		return r, err
	}
	hwTypes.Store(s, r)
	return r, nil
}

// hwTypeOID parses a dotted OID of any arc size into a DER OBJECT IDENTIFIER
// value (encoding/asn1 cannot hold the 128-bit arcs of 2.25 OIDs).
func hwTypeOID(s string) (asn1.RawValue, error) {
	oid, err := x509.ParseOID(s)
	if err != nil {
		return asn1.RawValue{}, fmt.Errorf("%q: %v", s, err)
	}
	body, err := oid.MarshalBinary()
	if err != nil {
		return asn1.RawValue{}, fmt.Errorf("%q: %v", s, err)
	}
	return asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagOID, Bytes: body}, nil
}

func parseOID(s string) (asn1.ObjectIdentifier, error) {
	if s == "" {
		return nil, fmt.Errorf("empty OID")
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("OID %q has fewer than two arcs", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, part := range parts {
		if part == "" || len(part) > 1 && part[0] == '0' {
			return nil, fmt.Errorf("OID %q: arc %d is empty or has a leading zero", s, i+1)
		}
		n := 0
		for _, c := range part {
			if c < '0' || c > '9' {
				return nil, fmt.Errorf("OID %q: arc %d is not a number", s, i+1)
			}
			if n > (1<<31-1)/10 {
				return nil, fmt.Errorf("OID %q: arc %d is too large", s, i+1)
			}
			n = n*10 + int(c-'0')
		}
		oid[i] = n
	}
	if oid[0] > 2 || oid[0] < 2 && oid[1] > 39 {
		return nil, fmt.Errorf("OID %q: invalid first arcs", s)
	}
	if _, err := asn1.Marshal(oid); err != nil {
		return nil, fmt.Errorf("OID %q: %v", s, err)
	}
	return oid, nil
}

// EKU is an extended key usage a profile names: one of the named usages
// (client_auth, server_auth, code_signing, email_protection) or a dotted
// OID.
type EKU string

// The named extended key usages.
const (
	EKUClientAuth      EKU = "client_auth"
	EKUServerAuth      EKU = "server_auth"
	EKUCodeSigning     EKU = "code_signing"
	EKUEmailProtection EKU = "email_protection"
)

// namedEKUs is the one table of named usages: the name a profile uses,
// crypto/x509's value and the OID (RFC 5280 section 4.2.1.12) that
// provisioner/issuance encodes.
var namedEKUs = []struct {
	name  EKU
	usage x509.ExtKeyUsage
	oid   asn1.ObjectIdentifier
}{
	{EKUServerAuth, x509.ExtKeyUsageServerAuth, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}},
	{EKUClientAuth, x509.ExtKeyUsageClientAuth, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}},
	{EKUCodeSigning, x509.ExtKeyUsageCodeSigning, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}},
	{EKUEmailProtection, x509.ExtKeyUsageEmailProtection, asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}},
}

// Valid reports whether e is a named usage or a dotted OID.
func (e EKU) Valid() bool {
	_, _, err := e.parse()
	return err == nil
}

// EKUOID returns the OID of a usage the profile may set by name, false for
// any other.
func EKUOID(u x509.ExtKeyUsage) (asn1.ObjectIdentifier, bool) {
	for _, n := range namedEKUs {
		if n.usage == u {
			return n.oid, true
		}
	}
	return nil, false
}

// parse returns a named usage, or an OID for a dotted value.
func (e EKU) parse() (x509.ExtKeyUsage, asn1.ObjectIdentifier, error) {
	for _, n := range namedEKUs {
		if n.name == e {
			return n.usage, nil, nil
		}
	}
	oid, err := parseOID(string(e))
	if err != nil {
		return 0, nil, fmt.Errorf("%q is not one of client_auth, server_auth, code_signing, email_protection or a dotted OID", string(e))
	}
	return 0, oid, nil
}
