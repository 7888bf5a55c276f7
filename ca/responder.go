package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"

	"github.com/tacline/tacline/tacerr"
)

// oidOCSPNoCheck is id-pkix-ocsp-nocheck (RFC 6960 4.2.2.2.1).
var oidOCSPNoCheck = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 5}

// OCSPResponder makes the certificate of a delegated OCSP responder for
// pub, signed by the device issuer (RFC 6960 4.2.2.2): keyUsage
// digitalSignature (critical), EKU id-kp-OCSPSigning, CA:FALSE,
// id-pkix-ocsp-nocheck (clients do not check the responder's own
// revocation, so keep v short), SKID and AKID. Its notAfter is capped at
// the issuer's.
func OCSPResponder(issuer *x509.Certificate, issuerSigner crypto.Signer, pub crypto.PublicKey, v Validity) (*x509.Certificate, error) {
	if pub == nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "key", "the OCSP responder's public key is required")
	}
	if err := checkParent(issuer, issuerSigner); err != nil {
		return nil, err
	}
	if v.NotAfter.After(issuer.NotAfter) {
		v.NotAfter = issuer.NotAfter
	}
	if err := v.check(); err != nil {
		return nil, err
	}
	_, pub, serial, skid, err := leaf(pub, "OCSP responder")
	if err != nil {
		return nil, err
	}
	subject := pkix.Name{CommonName: issuer.Subject.CommonName + " OCSP Responder", Organization: issuer.Subject.Organization}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             v.NotBefore.UTC(),
		NotAfter:              v.NotAfter.UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageOCSPSigning},
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		ExtraExtensions:       []pkix.Extension{{Id: oidOCSPNoCheck, Value: []byte{0x05, 0x00}}},
	}
	return sign(tmpl, issuer, pub, issuerSigner)
}
