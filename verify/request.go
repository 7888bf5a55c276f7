package verify

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// Limits of a request.
const (
	MaxChainCerts     = 8
	MaxChainBytes     = 32 << 10
	MaxNonceBytes     = 64
	MinNonceBytes     = 16
	MaxSignatureBytes = 256
)

// Request is the body of POST /v1/verify: the IMEI the device claims, its
// chain (PEM, device certificate first), the challenge nonce (hex) and the
// device's signature over it (base64 of the DER bytes).
type Request struct {
	IMEI      string `json:"imei"`
	Chain     string `json:"chain"`
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"`
}

// Parse checks the request's form and decodes it. Errors name the field
// (imei, chain, nonce, signature) and say what to send instead.
func (r Request) Parse() (Input, error) {
	m, err := ParseIMEI(r.IMEI)
	if err != nil {
		return Input{}, err
	}
	chain, err := ParseChainPEM([]byte(r.Chain))
	if err != nil {
		return Input{}, err
	}
	nonce, err := ParseNonce(r.Nonce)
	if err != nil {
		return Input{}, err
	}
	s := strings.TrimSpace(r.Signature)
	if s == "" {
		return Input{}, tacerr.Field(tacerr.InvalidInput, "signature", "is required: base64 of the device's DER ECDSA signature over the nonce bytes")
	}
	if len(s) > base64.StdEncoding.EncodedLen(MaxSignatureBytes) {
		return Input{}, tacerr.Field(tacerr.InvalidInput, "signature", "is longer than an ECDSA signature can be (%d bytes at most)", MaxSignatureBytes)
	}
	sig, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Input{}, tacerr.Field(tacerr.InvalidInput, "signature", "is not standard base64 (%v): send base64 of the DER signature bytes", err)
	}
	return Input{IMEI: m, Chain: chain, Nonce: nonce, Signature: sig}, nil
}

// ParseIMEI parses the claimed IMEI: 15 digits with a correct check digit
// (14 digits are accepted too, as a modem may report them).
func ParseIMEI(s string) (imei.IMEI, error) {
	m, err := imei.Parse(strings.TrimSpace(s))
	if err != nil {
		if e, ok := tacerr.As(err); ok {
			return imei.IMEI{}, tacerr.Field(tacerr.InvalidIMEI, "imei", "%s", e.Message)
		}
		return imei.IMEI{}, tacerr.Field(tacerr.InvalidIMEI, "imei", "%v", err)
	}
	return m, nil
}

// ParseNonce decodes a hex nonce of 16 to 64 bytes.
func ParseNonce(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "nonce", "is required: the hex nonce of a challenge (POST /v1/challenges)")
	}
	if len(s) > 2*MaxNonceBytes {
		return nil, tacerr.Field(tacerr.InvalidInput, "nonce", "is longer than %d bytes; give the challenge's nonce as issued", MaxNonceBytes)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "nonce", "is not hexadecimal (%v); give the challenge's nonce as issued", err)
	}
	if len(b) < MinNonceBytes {
		return nil, tacerr.Field(tacerr.InvalidInput, "nonce", "has %d bytes; a challenge nonce has at least %d", len(b), MinNonceBytes)
	}
	return b, nil
}

// ParseChainPEM decodes a chain of PEM CERTIFICATE blocks (device
// certificate first). Anything else in the text, an undecodable
// certificate, more than MaxChainCerts certificates or an empty chain is an
// error naming the field chain and the certificate's position.
func ParseChainPEM(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxChainBytes {
		return nil, tacerr.Field(tacerr.InvalidInput, "chain", "is larger than %d bytes; give the device certificate and its issuers only", MaxChainBytes)
	}
	return parseCerts(data, "chain", MaxChainCerts)
}

// ParseTrustPEM decodes trust anchors and intermediates (PEM CERTIFICATE
// blocks); errors name the field trust.
func ParseTrustPEM(data []byte) ([]*x509.Certificate, error) { return parseCerts(data, "trust", 1000) }

func parseCerts(data []byte, field string, limit int) ([]*x509.Certificate, error) {
	out, err := pemblock.Certificates(data, tacerr.InvalidInput, field)
	if err != nil {
		return nil, err
	}
	if len(out) > limit {
		return nil, tacerr.Field(tacerr.InvalidInput, field, "has more than %d certificates", limit)
	}
	return out, nil
}

// ParseCRL decodes one CRL, PEM ("X509 CRL") or DER.
func ParseCRL(data []byte) (*x509.RevocationList, error) {
	der := data
	if !pemblock.DER(data) {
		b, err := pemblock.One(data, tacerr.InvalidInput, "crl", "X509 CRL")
		if err != nil {
			return nil, err
		}
		der = b.Bytes
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "crl", "does not parse as a CRL (DER or PEM): %v", err)
	}
	return l, nil
}
