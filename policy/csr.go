package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// MaxCSRSize is the largest certificate signing request accepted, PEM or DER.
const MaxCSRSize = 16 << 10

// CSRRules are the key rules a device CSR must meet. Decode them from YAML
// over DefaultCSRRules.
type CSRRules struct {
	// Curves lists the accepted ECDSA curves: P-256, P-384, P-521.
	Curves []string `yaml:"curves" doc:"accepted ECDSA curves of device keys: P-256, P-384, P-521"`
	// AllowEd25519 accepts Ed25519 device keys.
	AllowEd25519 bool `yaml:"allow_ed25519" doc:"accept Ed25519 device keys"`
}

// DefaultCSRRules accepts ECDSA P-256 and P-384 keys.
func DefaultCSRRules() CSRRules {
	return CSRRules{Curves: []string{"P-256", "P-384"}}
}

// Validate names the first field at fault ("csr.curves[1]").
func (r CSRRules) Validate() error {
	if len(r.Curves) == 0 && !r.AllowEd25519 {
		return tacerr.Field(tacerr.InvalidConfig, "csr.curves", "no key type is accepted; list P-256 and/or P-384")
	}
	for i, c := range r.Curves {
		switch c {
		case "P-256", "P-384", "P-521":
		default:
			return tacerr.Field(tacerr.InvalidConfig, fmt.Sprintf("csr.curves[%d]", i), "%q is not one of P-256, P-384, P-521", c)
		}
	}
	return nil
}

func (r CSRRules) allows(curve string) bool {
	for _, c := range r.Curves {
		if c == curve {
			return true
		}
	}
	return false
}

// ParseCSR decodes a PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST")
// or DER certificate signing request of at most MaxCSRSize bytes, checks that
// its key is allowed by rules and that its signature verifies (proof of
// possession), and returns it with its public key. The CSR's subject and
// extensions are not looked at: the profile decides what is certified.
//
// Every refusal has code csr_invalid, field "csr", and a message naming the
// reason.
func ParseCSR(data []byte, rules CSRRules) (*x509.CertificateRequest, crypto.PublicKey, error) {
	csr, err := DecodeCSR(data, rules)
	if err != nil {
		return nil, nil, err
	}
	if err := CheckPossession(csr); err != nil {
		return nil, nil, err
	}
	return csr, csr.PublicKey, nil
}

// DecodeCSR is ParseCSR without the proof of possession: it decodes the
// request and checks its key against rules, so that a caller can answer
// the refusals that need only the key (and a ledger read keyed by it)
// before it spends a signature verification. A CSR it returns is not
// checked until CheckPossession accepts it.
func DecodeCSR(data []byte, rules CSRRules) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, csrErr("is %d bytes, larger than the %d-byte limit (oversized)", len(data), MaxCSRSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, csrErr("is empty; send a PEM or DER PKCS#10 certificate request")
	}
	var der []byte
	if pemblock.DER(data) {
		der = data // DER is binary: whitespace is significant
	} else {
		block, err := pemblock.One(data, tacerr.CSRInvalid, "csr", "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
		if err != nil {
			return nil, tacerr.Prefixed("the CSR is neither DER nor PEM only", err, tacerr.CSRInvalid)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, csrErr("is not a PKCS#10 certificate request (garbage or trailing data): %v", err)
	}
	if err := checkCSRKey(csr.PublicKey, rules); err != nil {
		return nil, err
	}
	return csr, nil
}

// CheckPossession verifies a decoded CSR's signature under its own key:
// the device's proof of possession of the private key.
func CheckPossession(csr *x509.CertificateRequest) error {
	if err := csr.CheckSignature(); err != nil {
		return csrErr("has a bad signature: proof of possession of the private key failed (%v)", err)
	}
	return nil
}

func checkCSRKey(pub crypto.PublicKey, rules CSRRules) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		name := k.Curve.Params().Name
		if !rules.allows(name) {
			return csrErr("has an ECDSA %s key; accepted keys: %s", name, rules.describe())
		}
		return nil
	case ed25519.PublicKey:
		if !rules.AllowEd25519 {
			return csrErr("has an Ed25519 key; accepted keys: %s", rules.describe())
		}
		return nil
	case *rsa.PublicKey:
		return csrErr("has an RSA-%d key; RSA is not accepted, use %s", k.N.BitLen(), rules.describe())
	case nil:
		return csrErr("has a public key of an unsupported algorithm; accepted keys: %s", rules.describe())
	default:
		return csrErr("has a %T key; accepted keys: %s", pub, rules.describe())
	}
}

func (r CSRRules) describe() string {
	s := ""
	for i, c := range r.Curves {
		if i > 0 {
			s += ", "
		}
		s += "ECDSA " + c
	}
	if r.AllowEd25519 {
		if s != "" {
			s += ", "
		}
		s += "Ed25519"
	}
	return s
}

func csrErr(format string, args ...any) error {
	return tacerr.Field(tacerr.CSRInvalid, "csr", "the CSR "+format, args...)
}
