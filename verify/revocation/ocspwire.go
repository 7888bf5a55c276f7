package revocation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/tacerr"
)

// OCSP object identifiers (RFC 6960, RFC 8954).
var (
	oidOCSPBasic   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}
	oidOCSPNonce   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}
	oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}
	oidSHA1        = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidECDSASHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
)

// OIDOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1), carried by
// delegated responder certificates.
var OIDOCSPNoCheck = oidOCSPNoCheck

// MaxNonce is the largest nonce echoed (RFC 8954 2.1: 1 to 32 octets); a
// request with a longer or empty nonce is answered without one.
const MaxNonce = 32

// certID is one entry of an OCSP request (RFC 6960 4.1.1).
type certID struct {
	Raw       []byte // the CertID as received: echoed in the SingleResponse
	Hash      crypto.Hash
	NameHash  []byte
	KeyHash   []byte
	Serial    *big.Int
	hashKnown bool
}

// ocspRequest is a parsed OCSPRequest: its entries and the request
// extension carrying the nonce (nil when absent or out of RFC 8954's
// bounds). A signature, if any, is accepted and not checked: answers are
// public and every request is answered the same way.
type ocspRequest struct {
	Entries  []certID
	NonceExt []byte // the whole nonce Extension, echoed as is
	Signed   bool
}

var (
	tagExplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagExplicit1 = cbasn1.Tag(1).ContextSpecific().Constructed()
	tagExplicit2 = cbasn1.Tag(2).ContextSpecific().Constructed()
)

// parseOCSPRequest reads a DER OCSPRequest (RFC 6960 4.1.1) with any number
// of entries, optional requestorName, extensions and signature.
func parseOCSPRequest(der []byte) (*ocspRequest, error) {
	in := cryptobyte.String(der)
	var req, tbs cryptobyte.String
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("not one DER SEQUENCE")
	}
	if !req.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		return nil, errors.New("no tbsRequest")
	}
	out := &ocspRequest{}
	if req.PeekASN1Tag(tagExplicit0) {
		var sig cryptobyte.String
		if !req.ReadASN1(&sig, tagExplicit0) {
			return nil, errors.New("bad optionalSignature")
		}
		out.Signed = true
	}
	if !req.Empty() {
		return nil, errors.New("trailing data after tbsRequest")
	}
	var version cryptobyte.String
	var hasVersion bool
	if !tbs.ReadOptionalASN1(&version, &hasVersion, tagExplicit0) {
		return nil, errors.New("bad version")
	}
	if hasVersion {
		var v int
		if !version.ReadASN1Integer(&v) || v != 0 {
			return nil, errors.New("version is not v1 (0)")
		}
	}
	if !tbs.SkipOptionalASN1(tagExplicit1) {
		return nil, errors.New("bad requestorName")
	}
	var list cryptobyte.String
	if !tbs.ReadASN1(&list, cbasn1.SEQUENCE) {
		return nil, errors.New("no requestList")
	}
	for !list.Empty() {
		var r, id cryptobyte.String
		if !list.ReadASN1(&r, cbasn1.SEQUENCE) || !r.ReadASN1Element(&id, cbasn1.SEQUENCE) {
			return nil, fmt.Errorf("request %d: not a SEQUENCE with a CertID", len(out.Entries))
		}
		if !r.SkipOptionalASN1(tagExplicit0) || !r.Empty() {
			return nil, fmt.Errorf("request %d: bad singleRequestExtensions", len(out.Entries))
		}
		c, err := parseCertID(id)
		if err != nil {
			return nil, fmt.Errorf("request %d: %v", len(out.Entries), err)
		}
		out.Entries = append(out.Entries, c)
	}
	if len(out.Entries) == 0 {
		return nil, errors.New("empty requestList")
	}
	var exts cryptobyte.String
	var hasExts bool
	if !tbs.ReadOptionalASN1(&exts, &hasExts, tagExplicit2) || !tbs.Empty() {
		return nil, errors.New("bad requestExtensions")
	}
	if hasExts {
		var seq cryptobyte.String
		if !exts.ReadASN1(&seq, cbasn1.SEQUENCE) || !exts.Empty() {
			return nil, errors.New("bad requestExtensions")
		}
		for !seq.Empty() {
			var ext, elem, body cryptobyte.String
			var oid asn1.ObjectIdentifier
			var value []byte
			if !seq.ReadASN1Element(&ext, cbasn1.SEQUENCE) {
				return nil, errors.New("bad extension")
			}
			elem = ext
			if !elem.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) ||
				!body.SkipOptionalASN1(cbasn1.BOOLEAN) || !body.ReadASN1Bytes(&value, cbasn1.OCTET_STRING) || !body.Empty() {
				return nil, errors.New("bad extension")
			}
			if !oid.Equal(oidOCSPNonce) {
				continue
			}
			// RFC 8954: Nonce ::= OCTET STRING (SIZE(1..32)).
			v := cryptobyte.String(value)
			var nonce []byte
			if v.ReadASN1Bytes(&nonce, cbasn1.OCTET_STRING) && v.Empty() && len(nonce) >= 1 && len(nonce) <= MaxNonce {
				out.NonceExt = []byte(ext)
			}
		}
	}
	return out, nil
}

func parseCertID(der cryptobyte.String) (certID, error) {
	c := certID{Raw: []byte(der)}
	var id, alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	serial := new(big.Int)
	if !der.ReadASN1(&id, cbasn1.SEQUENCE) || !id.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!id.ReadASN1Bytes(&c.NameHash, cbasn1.OCTET_STRING) || !id.ReadASN1Bytes(&c.KeyHash, cbasn1.OCTET_STRING) ||
		!id.ReadASN1Integer(serial) || !id.Empty() {
		return c, errors.New("malformed CertID")
	}
	if !alg.Empty() && !alg.SkipASN1(cbasn1.NULL) || !alg.Empty() {
		return c, errors.New("CertID hash algorithm has parameters other than NULL")
	}
	c.Serial = serial
	for h, o := range map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA1: oidSHA1, crypto.SHA256: oidSHA256, crypto.SHA384: oidSHA384, crypto.SHA512: oidSHA512} {
		if oid.Equal(o) {
			c.Hash, c.hashKnown = h, true
		}
	}
	return c, nil
}

// names reports whether the entry names cert as the issuer: both the name
// hash and the key hash must match (RFC 6960 4.1.1).
func (c certID) names(cert *x509.Certificate) bool {
	if !c.hashKnown || !c.Hash.Available() {
		return false
	}
	key := subjectKey(cert)
	h := c.Hash.New()
	h.Write(cert.RawSubject)
	nameOK := string(h.Sum(nil)) == string(c.NameHash)
	h.Reset()
	h.Write(key)
	return nameOK && string(h.Sum(nil)) == string(c.KeyHash)
}

// subjectKey is the subjectPublicKey BIT STRING's bytes of cert.
func subjectKey(cert *x509.Certificate) []byte {
	s := cryptobyte.String(cert.RawSubjectPublicKeyInfo)
	var spki cryptobyte.String
	var bits asn1.BitString
	if !s.ReadASN1(&spki, cbasn1.SEQUENCE) || !spki.SkipASN1(cbasn1.SEQUENCE) || !spki.ReadASN1BitString(&bits) {
		return nil
	}
	return bits.RightAlign()
}

// singleStatus is the answer for one entry.
type singleStatus struct {
	ID        certID
	Status    int // 0 good, 1 revoked, 2 unknown (ocsp.Good, ocsp.Revoked, ocsp.Unknown)
	RevokedAt time.Time
	Reason    int // RFC 5280 CRLReason; 0 omits it
}

// ocspResponder signs responses: its certificate (a delegated responder
// certificate, or the issuer itself) and key.
type ocspResponder struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
}

// encodeOCSPResponse builds and signs a successful BasicOCSPResponse with one
// SingleResponse per entry, the responder identified by key hash and its
// certificate included (RFC 6960 4.2.1, RFC 5019 2.2.2).
func encodeOCSPResponse(r ocspResponder, produced, this, next time.Time, entries []singleStatus, nonceExt []byte) ([]byte, error) {
	keyHash := sha1.Sum(subjectKey(r.Cert))
	var tbs cryptobyte.Builder
	tbs.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(tagExplicit2, func(b *cryptobyte.Builder) { b.AddASN1OctetString(keyHash[:]) })
		b.AddASN1GeneralizedTime(produced.UTC())
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, e := range entries {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddBytes(e.ID.Raw)
					switch e.Status {
					case 0:
						b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(*cryptobyte.Builder) {})
					case 1:
						b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
							b.AddASN1GeneralizedTime(e.RevokedAt.UTC())
							if e.Reason != 0 {
								b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1Enum(int64(e.Reason)) })
							}
						})
					default:
						b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(*cryptobyte.Builder) {})
					}
					b.AddASN1GeneralizedTime(this.UTC())
					b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) { b.AddASN1GeneralizedTime(next.UTC()) })
				})
			}
		})
		if nonceExt != nil {
			b.AddASN1(tagExplicit1, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(nonceExt) })
			})
		}
	})
	tbsDER, err := tbs.Bytes()
	if err != nil {
		return nil, err
	}
	hash, algOID, err := signatureAlgorithm(r.Signer.Public())
	if err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(tbsDER)
	digest := h.Sum(nil)
	sig, err := r.Signer.Sign(rand.Reader, digest, hash)
	if err != nil {
		return nil, err
	}
	// Relying parties check the signature under the responder
	// certificate's key: one that does not verify (a faulty HSM or driver,
	// a key that is not the certificate's) is never served.
	if pub, ok := r.Cert.PublicKey.(*ecdsa.PublicKey); !ok || !ecdsa.VerifyASN1(pub, digest, sig) {
		return nil, tacerr.New(tacerr.HSMUnavailable, "OCSP responder %s: the HSM returned a signature that does not verify under the responder certificate's public key; the response was not sent: check the HSM (`tacline hsm health`)", ca.KeyID(r.Cert))
	}
	var basic cryptobyte.Builder
	basic.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbsDER)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(algOID) })
		b.AddASN1BitString(sig)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddBytes(r.Cert.Raw) })
		})
	})
	basicDER, err := basic.Bytes()
	if err != nil {
		return nil, err
	}
	var resp cryptobyte.Builder
	resp.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Enum(0) // successful
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(oidOCSPBasic)
				b.AddASN1OctetString(basicDER)
			})
		})
	})
	return resp.Bytes()
}

// signatureAlgorithm is the hash and ECDSA signature algorithm of a
// responder key (P-256: SHA-256, P-384: SHA-384).
func signatureAlgorithm(pub crypto.PublicKey) (crypto.Hash, asn1.ObjectIdentifier, error) {
	if k, ok := pub.(*ecdsa.PublicKey); ok {
		switch k.Curve {
		case elliptic.P256():
			return crypto.SHA256, oidECDSASHA256, nil
		case elliptic.P384():
			return crypto.SHA384, oidECDSASHA384, nil
		}
	}
	return 0, nil, fmt.Errorf("OCSP responder key %T: only ECDSA P-256 and P-384 are supported", pub)
}
