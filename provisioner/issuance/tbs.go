package issuance

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tacline/tacline/internal/der"
	"github.com/tacline/tacline/policy"
)

// The TBS encoder writes the DER TBSCertificate for a policy.Profile template
// directly, byte for byte what crypto/x509.CreateCertificate writes for the
// same template and parent (TestTBSMatchesCreateCertificate compares them
// over every profile option). It exists for speed: CreateCertificate always
// signs and then verifies its own signature, which for the linting
// certificate is ~60 us of wasted ECDSA verification and ~150 us in all per
// issuance; encoding the TBS here costs a few microseconds, and the linting
// copy is then signed once with the throwaway key.
//
// It encodes only the fields policy.Profile.Template sets and refuses a
// template that sets any other, so a profile change that the encoder does not
// know cannot silently produce a different certificate.

var (
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtendedKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtAuthorityInfo    = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
	oidExtCRLDistribution  = asn1.ObjectIdentifier{2, 5, 29, 31}
	oidAccessOCSP          = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1}
	oidAccessCAIssuers     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 2}
)

// buildTBS encodes the TBSCertificate of tmpl for subject key pub, issued by
// the CA whose DER subject is issuerName and whose subjectKeyIdentifier is
// authorityKeyID, to be signed with sigAlg (ECDSA).
func buildTBS(tmpl *x509.Certificate, pub crypto.PublicKey, issuerName, authorityKeyID []byte, sigAlg x509.SignatureAlgorithm) ([]byte, error) {
	if err := encodable(tmpl); err != nil {
		return nil, err
	}
	algOID, ok := sigAlgOIDs[sigAlg]
	if !ok {
		return nil, fmt.Errorf("signature algorithm %v is not supported", sigAlg)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 640))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(tmpl.SerialNumber)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(algOID) })
		b.AddBytes(issuerName)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, tmpl.NotBefore)
			addTime(b, tmpl.NotAfter)
		})
		addName(b, tmpl.Subject)
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { addExtensions(b, tmpl, authorityKeyID) })
		})
	})
	return b.Bytes()
}

// encodable refuses templates that set fields the encoder does not write.
func encodable(t *x509.Certificate) error {
	switch {
	case t.SerialNumber == nil || t.SerialNumber.Sign() <= 0:
		return fmt.Errorf("the serial number must be positive")
	case len(t.RawSubject) > 0, len(t.Subject.Country)+len(t.Subject.Province)+len(t.Subject.Locality)+
		len(t.Subject.StreetAddress)+len(t.Subject.PostalCode)+len(t.Subject.OrganizationalUnit)+len(t.Subject.ExtraNames) > 0:
		return fmt.Errorf("only serialNumber, O and CN subject attributes are supported")
	case len(t.Subject.Organization) > 1: // crypto/x509 puts them in one multi-valued RDN
		return fmt.Errorf("at most one subject O is supported")
	case len(t.DNSNames)+len(t.EmailAddresses)+len(t.IPAddresses)+len(t.URIs) > 0:
		return fmt.Errorf("subjectAltName must be given as an extra extension")
	case len(t.PolicyIdentifiers)+len(t.Policies) > 0,
		t.PermittedDNSDomainsCritical, len(t.PermittedDNSDomains)+len(t.ExcludedDNSDomains)+len(t.PermittedIPRanges)+
			len(t.ExcludedIPRanges)+len(t.PermittedEmailAddresses)+len(t.ExcludedEmailAddresses)+len(t.PermittedURIDomains)+len(t.ExcludedURIDomains) > 0:
		return fmt.Errorf("policies and name constraints are not supported")
	case t.IsCA, t.MaxPathLen != 0, t.MaxPathLenZero, len(t.AuthorityKeyId) > 0:
		return fmt.Errorf("only end-entity certificates are supported")
	}
	for _, e := range t.ExtraExtensions {
		for _, own := range []asn1.ObjectIdentifier{oidExtKeyUsage, oidExtExtendedKeyUsage, oidExtBasicConstraints, oidExtSubjectKeyID, oidExtAuthorityKeyID, oidExtAuthorityInfo, oidExtCRLDistribution} {
			if e.Id.Equal(own) {
				return fmt.Errorf("extra extension %v overrides a standard one", e.Id)
			}
		}
	}
	for _, u := range t.ExtKeyUsage {
		if _, ok := policy.EKUOID(u); !ok {
			return fmt.Errorf("extended key usage %d is not supported", u)
		}
	}
	return nil
}

// addTime writes UTCTime for years 1950-2049 and GeneralizedTime otherwise
// (RFC 5280 §4.1.2.5), at second precision.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		b.AddASN1UTCTime(t)
		return
	}
	b.AddASN1GeneralizedTime(t)
}

// addName writes the subject in pkix.Name.ToRDNSequence order (O, CN,
// serialNumber), one attribute per RDN.
func addName(b *cryptobyte.Builder, n pkix.Name) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if len(n.Organization) == 1 {
			der.AddRDN(b, der.OIDOrganization, n.Organization[0])
		}
		if n.CommonName != "" {
			der.AddRDN(b, der.OIDCommonName, n.CommonName)
		}
		if n.SerialNumber != "" {
			der.AddRDN(b, der.OIDSerialNumber, n.SerialNumber)
		}
	})
}

// addExtensions writes the extensions in crypto/x509's order: keyUsage,
// extendedKeyUsage, basicConstraints, subjectKeyIdentifier,
// authorityKeyIdentifier, authorityInfoAccess, cRLDistributionPoints, then
// the template's extra extensions.
func addExtensions(b *cryptobyte.Builder, t *x509.Certificate, authorityKeyID []byte) {
	if t.KeyUsage != 0 {
		addExtension(b, oidExtKeyUsage, true, func(b *cryptobyte.Builder) {
			bits := []byte{reverseBits(byte(t.KeyUsage)), reverseBits(byte(t.KeyUsage >> 8))}
			if bits[1] == 0 {
				bits = bits[:1]
			}
			last := bits[len(bits)-1]
			pad := 0
			for last&1 == 0 {
				last >>= 1
				pad++
			}
			b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
				b.AddUint8(uint8(pad))
				b.AddBytes(bits)
			})
		})
	}
	if len(t.ExtKeyUsage)+len(t.UnknownExtKeyUsage) > 0 {
		addExtension(b, oidExtExtendedKeyUsage, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range t.ExtKeyUsage {
					oid, _ := policy.EKUOID(u) // encodable refused any other
					b.AddASN1ObjectIdentifier(oid)
				}
				for _, oid := range t.UnknownExtKeyUsage {
					b.AddASN1ObjectIdentifier(oid)
				}
			})
		})
	}
	if t.BasicConstraintsValid {
		addExtension(b, oidExtBasicConstraints, true, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(*cryptobyte.Builder) {}) // cA FALSE (DEFAULT), no pathLen
		})
	}
	if len(t.SubjectKeyId) > 0 {
		addExtension(b, oidExtSubjectKeyID, false, func(b *cryptobyte.Builder) { b.AddASN1OctetString(t.SubjectKeyId) })
	}
	if len(authorityKeyID) > 0 {
		addExtension(b, oidExtAuthorityKeyID, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(authorityKeyID) })
			})
		})
	}
	if len(t.OCSPServer)+len(t.IssuingCertificateURL) > 0 {
		addExtension(b, oidExtAuthorityInfo, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, a := range []struct {
					method asn1.ObjectIdentifier
					urls   []string
				}{{oidAccessOCSP, t.OCSPServer}, {oidAccessCAIssuers, t.IssuingCertificateURL}} {
					for _, u := range a.urls {
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
							b.AddASN1ObjectIdentifier(a.method)
							addURI(b, u)
						})
					}
				}
			})
		})
	}
	if len(t.CRLDistributionPoints) > 0 {
		addExtension(b, oidExtCRLDistribution, false, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for _, u := range t.CRLDistributionPoints {
					// DistributionPoint { distributionPoint [0] { fullName [0] { uniformResourceIdentifier [6] } } }
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { addURI(b, u) })
						})
					})
				}
			})
		})
	}
	for _, e := range t.ExtraExtensions {
		addExtension(b, e.Id, e.Critical, func(b *cryptobyte.Builder) { b.AddBytes(e.Value) })
	}
}

// addURI writes a GeneralName uniformResourceIdentifier ([6] IA5String).
func addURI(b *cryptobyte.Builder, u string) {
	b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
}

// addExtension writes Extension ::= SEQUENCE { extnID, critical BOOLEAN
// DEFAULT FALSE, extnValue OCTET STRING } with value written inside the
// OCTET STRING.
func addExtension(b *cryptobyte.Builder, id asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(id)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

func reverseBits(in byte) byte {
	var out byte
	for i := 0; i < 8; i++ {
		out = out<<1 | in&1
		in >>= 1
	}
	return out
}
