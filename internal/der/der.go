// Package der holds the few DER encoding pieces tacline writes by hand with
// cryptobyte, where crypto/x509 would sign and then verify its own
// signature for nothing (the device certificate TBS in issuance, the
// simulated device's CSR in factory). Callers test their output against
// crypto/x509's byte for byte.
package der

import (
	"encoding/asn1"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Attribute OIDs of the names tacline writes.
var (
	OIDCommonName   = asn1.ObjectIdentifier{2, 5, 4, 3}
	OIDSerialNumber = asn1.ObjectIdentifier{2, 5, 4, 5}
	OIDOrganization = asn1.ObjectIdentifier{2, 5, 4, 10}
)

// AddRDN writes one single-valued RelativeDistinguishedName, SET {
// SEQUENCE { type, value } }, the value a PrintableString when it allows
// it and a UTF8String otherwise, as encoding/asn1 chooses.
func AddRDN(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, v string) {
	tag := cbasn1.PrintableString
	if !PrintableString(v) {
		tag = cbasn1.UTF8String
	}
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oid)
			b.AddASN1(tag, func(b *cryptobyte.Builder) { b.AddBytes([]byte(v)) })
		})
	})
}

// PrintableString is encoding/asn1's test for marshalling a string as
// PrintableString (X.680 §41.4, without '*' and '&').
func PrintableString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		switch c {
		case ' ', '\'', '(', ')', '+', ',', '-', '.', '/', ':', '=', '?':
			continue
		}
		return false
	}
	return true
}

// Signed writes SEQUENCE { tbs, AlgorithmIdentifier { alg }, BIT STRING
// sig }, the outer form of certificates and certification requests, around
// the exact tbs bytes. ECDSA AlgorithmIdentifiers have absent parameters
// (RFC 5758 §3.2).
func Signed(tbs []byte, alg asn1.ObjectIdentifier, sig []byte) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+32))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(alg) })
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}
