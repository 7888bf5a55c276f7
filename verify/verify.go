// Package verify decides whether a device is what it claims to be: given the
// IMEI a device reports, its certificate chain, a challenge nonce and the
// device's signature over that nonce, Check returns one Verdict (genuine,
// cloned, tampered, counterfeit, revoked, unknown) with the reasons behind
// it.
//
// The package is pure decision logic: it does no I/O of its own. Trust
// anchors come in a Trust, revocation through the Revocation interface (a
// CRLSet built from CRLs, or the ledger), and the online checks through the
// small Ledger interface, which the server implements over the ledger.
//
// The package promises:
//
//   - Genuine is returned only when every check ran and passed: the chain
//     verifies to a self-signed trust anchor, the certificate is not revoked
//     (when a revocation source is given), the claimed IMEI is one of the
//     certificate's SAN IMEIs, the signature over the nonce verifies with the
//     certificate's key, and, with a Ledger, the ledger holds this IMEI BOUND
//     to this certificate. Any failed, skipped-for-error or undecidable check
//     yields another verdict or an error, never Genuine.
//   - Malformed input (an IMEI that does not parse, a chain that is not PEM
//     certificates, a nonce that is not hex, a signature that is not base64)
//     is an error naming the field (tacerr invalid_input or invalid_imei),
//     never a verdict.
//   - The device signs the hex-decoded nonce bytes with ECDSA over SHA-256
//     (SHA-384 for a P-384 key), ASN.1 DER.
package verify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/tacerr"
)

// Verdict is the answer of a check.
type Verdict string

// The verdicts.
const (
	// Genuine: every check passed.
	Genuine Verdict = "genuine"
	// Cloned: a valid certificate for the IMEI but no valid signature over
	// the nonce (the number and the certificate were copied, not the key),
	// or (online) the IMEI is bound to another certificate.
	Cloned Verdict = "cloned"
	// Tampered: a valid certificate and signature, but the claimed IMEI is
	// not in the certificate (the identifier was changed on the device).
	Tampered Verdict = "tampered"
	// Counterfeit: no chain to a trusted root, or (online) a certificate
	// the ledger never issued.
	Counterfeit Verdict = "counterfeit"
	// Revoked: the certificate was revoked; the reasons say why.
	Revoked Verdict = "revoked"
	// Unknown: not enough to decide (a TAC of no trusted manufacturer, an
	// expired certificate, a stale CRL); the reasons say why.
	Unknown Verdict = "unknown"
)

// Input is one device's answer to a challenge.
type Input struct {
	IMEI      imei.IMEI           // the IMEI the device claims (as its modem reports it)
	Chain     []*x509.Certificate // device certificate first, then its issuers
	Nonce     []byte              // the challenge bytes the device signed
	Signature []byte              // ASN.1 DER ECDSA signature over Nonce
	At        time.Time           // when the check runs (zero: now)
}

// Result is a verdict with its reasons.
type Result struct {
	Verdict           Verdict   `json:"verdict"`
	Reasons           []string  `json:"reasons"`
	IMEI              string    `json:"imei"`
	CertificateSerial string    `json:"certificate_serial"` // lower-case hex, "" when there is no certificate
	CheckedAt         time.Time `json:"checked_at,omitzero"`
}

// RevocationStatus is what a revocation source knows of a certificate.
type RevocationStatus struct {
	Revoked   bool
	Reason    string    // why it was revoked (tacline reason or RFC 5280 reason name)
	RevokedAt time.Time // when
	// Undecided, when not empty, says why the source cannot tell (a stale
	// CRL, no CRL for the issuer): the verdict is then unknown.
	Undecided string
}

// Revocation tells whether a certificate issued by issuer is revoked.
type Revocation interface {
	Status(ctx context.Context, cert, issuer *x509.Certificate, at time.Time) (RevocationStatus, error)
}

// LedgerCert is the ledger's record of an issued certificate.
type LedgerCert struct {
	Serial       string
	DeviceSerial string
	DER          []byte
	Revoked      bool
	RevokeReason lifecycle.RevokeReason
	RevokedAt    time.Time
}

// LedgerIMEI is the ledger's record of an IMEI.
type LedgerIMEI struct {
	State      lifecycle.State
	CertSerial string // the certificate it is bound to
	Reason     string
}

// Ledger is what online checks read. A nil record with a nil error means
// the ledger does not know the object.
type Ledger interface {
	Certificate(ctx context.Context, serialHex string) (*LedgerCert, error)
	IMEI(ctx context.Context, m imei.IMEI) (*LedgerIMEI, error)
	// KnowsTAC reports whether the TAC is in the manufacturer's catalogue.
	KnowsTAC(ctx context.Context, tac uint32) (bool, error)
}

// SerialHex is the ledger's form of a certificate serial: lower-case hex of
// the serial's big-endian bytes.
func SerialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// Check decides the verdict for in. trust is required; rev and ledger may be
// nil (offline without a CRL: revocation is not checked, which the reasons
// say). An error means a source failed (the ledger is down, a CRL is
// forged): no verdict is given then.
func Check(ctx context.Context, in Input, trust *Trust, rev Revocation, ledger Ledger) (Result, error) {
	if trust == nil {
		return Result{}, tacerr.New(tacerr.Internal, "verify.Check: no trust anchors")
	}
	at := in.At
	if at.IsZero() {
		at = time.Now()
	}
	res := Result{IMEI: in.IMEI.String(), CheckedAt: at.UTC().Truncate(time.Second)}
	if len(in.Chain) == 0 || in.Chain[0] == nil {
		return Result{}, tacerr.Field(tacerr.InvalidInput, "chain", "is empty: give the device certificate first, then its issuers, as PEM")
	}
	if len(in.Nonce) == 0 {
		return Result{}, tacerr.Field(tacerr.InvalidInput, "nonce", "is empty: give the challenge nonce the device signed")
	}
	leaf := in.Chain[0]
	res.CertificateSerial = SerialHex(leaf)
	decide := func(v Verdict, reasons ...string) (Result, error) {
		res.Verdict = v
		res.Reasons = append(res.Reasons, reasons...)
		return res, nil
	}

	// 1. Does the TAC belong to a manufacturer we can vouch for?
	known, why, err := trust.knowsTAC(ctx, in.IMEI.TAC(), ledger)
	if err != nil {
		return Result{}, err
	}
	if !known {
		return decide(Unknown, why)
	}

	// 2. The chain to a trust anchor.
	issuer, v, why := trust.verifyChain(leaf, in.Chain[1:], at)
	if v != "" {
		return decide(v, why)
	}
	res.Reasons = append(res.Reasons, "certificate chain verifies to trusted root "+quoteSubject(issuer.root))

	// 3. Online: the ledger issued this certificate.
	var lc *LedgerCert
	if ledger != nil {
		if lc, err = ledger.Certificate(ctx, res.CertificateSerial); err != nil {
			return Result{}, err
		}
		if lc == nil {
			return decide(Counterfeit, fmt.Sprintf("certificate serial %s was never issued by this tacline ledger (a trusted CA key may be compromised)", res.CertificateSerial))
		}
		if len(lc.DER) > 0 && string(lc.DER) != string(leaf.Raw) {
			return decide(Counterfeit, fmt.Sprintf("certificate serial %s differs from the certificate the ledger issued under that serial", res.CertificateSerial))
		}
	}

	// 4. Revocation.
	if lc != nil && lc.Revoked {
		return decide(Revoked, revokedReason(string(lc.RevokeReason), lc.RevokedAt))
	}
	if rev != nil && issuer.parent != issuer.root && string(issuer.parent.RawIssuer) == string(issuer.root.RawSubject) {
		// The issuing CA on its root's CRL, when that CRL was given (it is
		// not required: without it the CA's status is not checked).
		st, err := rev.Status(ctx, issuer.parent, issuer.root, at)
		if err != nil {
			return Result{}, err
		}
		if st.Revoked {
			return decide(Revoked, "the certificate's issuing CA "+quoteSubject(issuer.parent)+" was revoked by its root: "+revokedReason(st.Reason, st.RevokedAt))
		}
	}
	if rev != nil {
		st, err := rev.Status(ctx, leaf, issuer.parent, at)
		if err != nil {
			return Result{}, err
		}
		switch {
		case st.Revoked:
			return decide(Revoked, revokedReason(st.Reason, st.RevokedAt))
		case st.Undecided != "":
			return decide(Unknown, st.Undecided)
		}
		res.Reasons = append(res.Reasons, "certificate is not revoked")
	} else if ledger == nil {
		res.Reasons = append(res.Reasons, "revocation not checked: no CRL given")
	}

	// 5. The claimed IMEI and the signature over the nonce.
	inCert, err := certHasIMEI(leaf, in.IMEI)
	if err != nil {
		return decide(Counterfeit, err.Error())
	}
	sigOK, sigWhy := checkSignature(leaf, in.Nonce, in.Signature)
	switch {
	case !sigOK && inCert:
		return decide(Cloned, sigWhy+": the IMEI and certificate may have been copied without the device key")
	case !sigOK:
		return decide(Cloned, sigWhy, fmt.Sprintf("IMEI %s is not in the certificate either: the certificate belongs to another device", in.IMEI))
	case !inCert:
		return decide(Tampered, fmt.Sprintf("the device holds the certificate's key, but IMEI %s is not one of the certificate's IMEIs: the identifier was changed on the device", in.IMEI))
	}
	res.Reasons = append(res.Reasons, "IMEI "+in.IMEI.String()+" is in the certificate", "signature over the nonce verifies with the certificate's key")

	// 6. Online: the ledger binds this IMEI to this certificate.
	if ledger != nil {
		li, err := ledger.IMEI(ctx, in.IMEI)
		if err != nil {
			return Result{}, err
		}
		switch {
		case li == nil:
			return decide(Counterfeit, fmt.Sprintf("IMEI %s was never allocated by this ledger although a trusted certificate names it", in.IMEI))
		case li.State == lifecycle.StateRevoked:
			return decide(Revoked, fmt.Sprintf("IMEI %s is revoked in the ledger (%s)", in.IMEI, orDash(li.Reason)))
		case li.State == lifecycle.StateVoided:
			return decide(Revoked, fmt.Sprintf("IMEI %s is voided in the ledger (%s)", in.IMEI, orDash(li.Reason)))
		case li.State != lifecycle.StateBound:
			return decide(Unknown, fmt.Sprintf("IMEI %s is %s in the ledger, not bound to a device", in.IMEI, li.State))
		case li.CertSerial != res.CertificateSerial:
			return decide(Cloned, fmt.Sprintf("IMEI %s is bound to certificate %s, not to the presented certificate %s: the device is a copy", in.IMEI, li.CertSerial, res.CertificateSerial))
		}
		res.Reasons = append(res.Reasons, "ledger binds IMEI "+in.IMEI.String()+" to this certificate")
	}
	return decide(Genuine)
}

func revokedReason(reason string, at time.Time) string {
	s := "certificate revoked (reason: " + orDash(reason) + ")"
	if !at.IsZero() {
		s += " at " + at.UTC().Format(time.RFC3339)
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "unspecified"
	}
	return s
}

// certHasIMEI reports whether m is one of the certificate's SAN IMEI URNs.
// A certificate without any IMEI URN is not a tacline device certificate.
func certHasIMEI(c *x509.Certificate, m imei.IMEI) (bool, error) {
	n := 0
	for _, u := range c.URIs {
		got, err := imei.ParseURN(u.String())
		if err != nil {
			continue
		}
		n++
		if got == m {
			return true, nil
		}
	}
	if n == 0 {
		return false, errors.New("the certificate carries no IMEI (urn:gsma:imei URI SAN): it is not a device certificate")
	}
	return false, nil
}

// checkSignature verifies the device's signature over the nonce.
func checkSignature(c *x509.Certificate, nonce, sig []byte) (bool, string) {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return false, fmt.Sprintf("the certificate key is %T, not ECDSA: no device signature can verify", c.PublicKey)
	}
	var digest []byte
	switch pub.Curve {
	case elliptic.P256():
		s := sha256.Sum256(nonce)
		digest = s[:]
	case elliptic.P384():
		s := sha512.Sum384(nonce)
		digest = s[:]
	default:
		return false, "the certificate key is on curve " + pub.Curve.Params().Name + ", not P-256 or P-384"
	}
	if len(sig) == 0 {
		return false, "no signature over the nonce"
	}
	if !ecdsa.VerifyASN1(pub, digest, sig) {
		return false, "the signature over the nonce does not verify with the certificate's key"
	}
	return true, ""
}
