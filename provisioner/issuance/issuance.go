// Package issuance turns one device's data into a certificate signed once by
// the HSM, in boulder's order: build the to-be-signed certificate from the
// profile, sign a copy with a throwaway key of the issuer's type and curve
// (the "linting certificate"), lint that copy with zlint, and only then hand
// the exact linted TBS bytes to the HSM.
//
// It promises:
//
//   - Prepare never touches the HSM; Issue signs at most once per Token, even
//     when called concurrently, and returns a certificate only if its
//     RawTBSCertificate is byte-identical to the linted one and its signature
//     verifies under the issuer's public key.
//   - The same Request (same Serial and NotBefore) gives the same TBS bytes,
//     so a replay after a crash re-issues exactly what the intent recorded
//     (TBSHash).
//   - Any zlint result at warn, error or fatal blocks issuance with code
//     lint_failed naming the lint, unless the configuration allows that lint
//     with a reason.
//
// It receives a crypto.Signer and never imports the hsm package.
package issuance

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/der"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// Config builds an Issuer.
type Config struct {
	IssuerCert *x509.Certificate   // the issuing CA certificate; its key is in the HSM
	Chain      []*x509.Certificate // certificates above IssuerCert, up to (not required to include) the root
	Signer     crypto.Signer       // the issuing CA key, from the HSM
	Profile    policy.Profile
	Lint       LintConfig
	// Upstream, when set, signs instead of Signer (which must then be
	// nil): an upstream CA such as step-ca whose issuing CA is IssuerCert.
	// Use IssueUpstream, not Issue.
	Upstream Upstream
}

// Upstream signs a prepared certificate outside tacline's HSM: it gets the
// linting certificate (the exact TBS to sign) and the device's CSR and
// returns the certificate's DER, whose TBS it has checked is lint's.
type Upstream interface {
	Sign(ctx context.Context, lint *x509.Certificate, csr *x509.CertificateRequest, device string, imeis []string) ([]byte, error)
	// Revoke revokes a serial at the upstream CA (already revoked is not
	// an error).
	Revoke(ctx context.Context, serial *big.Int, reason string) error
	// Health asks the upstream CA whether it answers; Unreachable says
	// whether an error of Sign means it did not (nothing was signed).
	Health(ctx context.Context) error
	Unreachable(err error) bool
}

// Issuer signs device certificates under one issuing CA. It is safe for
// concurrent use.
type Issuer struct {
	cert      *x509.Certificate
	chain     []*x509.Certificate
	signer    crypto.Signer
	pub       *ecdsa.PublicKey // the issuer key, from IssuerCert
	profile   policy.Profile
	sigAlg    x509.SignatureAlgorithm
	hash      crypto.Hash
	throwaway *ecdsa.PrivateKey // the linting key, same type and curve as signer
	lintSig   []byte            // the linting certificates' signature value, made once by throwaway
	lint      *linter
	health    signerHealth
	upstream  Upstream
}

// New checks cfg and returns an Issuer. The issuer key must be ECDSA P-256
// (certificates are signed ECDSA-SHA256) or P-384 (ECDSA-SHA384), and match
// IssuerCert, which must be a CA allowed to sign certificates and carry a
// subjectKeyIdentifier (it becomes every device certificate's AKID).
func New(cfg Config) (*Issuer, error) {
	if cfg.IssuerCert == nil || (cfg.Signer == nil) == (cfg.Upstream == nil) {
		return nil, tacerr.New(tacerr.InvalidConfig, "issuance: an issuer certificate and either its signer or an upstream CA are required")
	}
	if err := cfg.Profile.Validate(); err != nil {
		return nil, err
	}
	reg, allowed, err := cfg.Lint.compile()
	if err != nil {
		return nil, err
	}
	c := cfg.IssuerCert
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, tacerr.Field(tacerr.InvalidConfig, "issuer.cert", "certificate %q is not a CA allowed to sign certificates (basicConstraints CA:TRUE and keyUsage keyCertSign needed)", c.Subject)
	}
	if len(c.SubjectKeyId) == 0 {
		return nil, tacerr.Field(tacerr.InvalidConfig, "issuer.cert", "certificate %q has no subjectKeyIdentifier, so device certificates could not carry an authorityKeyIdentifier", c.Subject)
	}
	var key crypto.PublicKey = c.PublicKey
	if cfg.Signer != nil {
		key = cfg.Signer.Public()
	}
	pub, ok := key.(*ecdsa.PublicKey)
	if !ok {
		return nil, tacerr.Field(tacerr.InvalidConfig, "issuer.key", "the issuer key is %T; an ECDSA P-256 or P-384 key is required", key)
	}
	if !pub.Equal(c.PublicKey) {
		return nil, tacerr.Field(tacerr.InvalidConfig, "issuer.key", "the HSM key does not match the public key of certificate %q", c.Subject)
	}
	is := &Issuer{cert: c, chain: cfg.Chain, signer: cfg.Signer, pub: pub, profile: cfg.Profile.ForIssuer(hex.EncodeToString(c.SubjectKeyId)),
		lint: newLinter(reg, allowed), upstream: cfg.Upstream}
	var curve elliptic.Curve
	switch pub.Curve {
	case elliptic.P256():
		is.sigAlg, is.hash, curve = x509.ECDSAWithSHA256, crypto.SHA256, elliptic.P256()
	case elliptic.P384():
		is.sigAlg, is.hash, curve = x509.ECDSAWithSHA384, crypto.SHA384, elliptic.P384()
	default:
		return nil, tacerr.Field(tacerr.InvalidConfig, "issuer.key", "the issuer key is on curve %s; P-256 or P-384 is required", pub.Curve.Params().Name)
	}
	if fixed, ok := cfg.Profile.FixedNotAfter(); ok && fixed.After(c.NotAfter) {
		return nil, tacerr.Field(tacerr.InvalidConfig, "profile.not_after", "device certificates would end %s, after their issuing CA %q (%s): no certificate may outlive its issuer; issue the CA until 99991231235959Z (IEEE 802.1AR, the `tacline ca init` default) or set profile.not_after to a duration",
			fixed.Format("20060102150405Z"), c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
	}
	tk, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "generate the linting key")
	}
	is.throwaway = tk
	// The linting certificates' signature: one ECDSA signature of the
	// issuer's algorithm by the throwaway key, made here once. No selected
	// lint verifies a signature (the one that would, against a public CA's
	// compromised keys, is never run: notRun), so a signature made afresh
	// over each TBS by a key nobody else knows told zlint nothing more than
	// this one does, and cost an ECDSA signature per certificate.
	h := is.hash.New()
	h.Write([]byte("tacline linting certificate"))
	if is.lintSig, err = ecdsa.SignASN1(rand.Reader, tk, h.Sum(nil)); err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "sign with the linting key")
	}
	return is, nil
}

// Upstream reports whether an upstream CA signs for this issuer
// (IssueUpstream) rather than the HSM (Issue).
func (is *Issuer) Upstream() bool { return is.upstream != nil }

// Certificate returns the issuing CA certificate.
func (is *Issuer) Certificate() *x509.Certificate { return is.cert }

// Chain returns the issuing CA certificate followed by Config.Chain (PEM:
// ca.ChainPEM(is.Chain()...)).
func (is *Issuer) Chain() []*x509.Certificate {
	return append([]*x509.Certificate{is.cert}, is.chain...)
}

// Request is one device certificate to issue.
type Request struct {
	DeviceSerial string
	Manufacturer string
	Model        string
	IMEIs        []imei.IMEI
	PublicKey    crypto.PublicKey // from policy.ParseCSR
	// Serial is the certificate serial number the caller recorded in its
	// intent, or nil to draw a new one (policy.NewSerial).
	Serial *big.Int
	// NotBefore is the issue time the caller recorded; the certificate's
	// notBefore is NotBefore minus the profile's back-date. Required, so that
	// a replay builds the same TBS.
	NotBefore time.Time
}

// Token is a prepared, linted, not yet signed certificate. It can be issued
// once.
type Token struct {
	issuer   *Issuer
	tbs      []byte
	digest   []byte // hash of tbs under the issuer's signature hash
	lintDER  []byte // the linting certificate
	serial   *big.Int
	findings []LintFinding
	used     atomic.Bool
	device   string
	imeis    []string
}

// Serial returns the certificate serial number of the token.
func (t *Token) Serial() *big.Int { return new(big.Int).Set(t.serial) }

// TBS returns a copy of the exact DER TBSCertificate that Issue will sign.
func (t *Token) TBS() []byte { return bytes.Clone(t.tbs) }

// AllowedFindings returns the lint results at warn or above that the
// configuration allowed.
func (t *Token) AllowedFindings() []LintFinding { return append([]LintFinding(nil), t.findings...) }

// LintCertificate parses the linting certificate: the token's exact TBS
// with the throwaway key's signature (which never verifies under the
// issuer, nor over this TBS).
func (t *Token) LintCertificate() (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(t.lintDER)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "parse the linting certificate")
	}
	return c, nil
}

// TBSHash returns the SHA-256 of the token's TBSCertificate, for the intent
// record.
func TBSHash(tok *Token) [32]byte { return sha256.Sum256(tok.tbs) }

// Prepare builds the certificate for req, assembles its linting certificate
// (the throwaway key's signature) and lints it. It returns a single-use Token for Issue; Token.LintCertificate is
// the linted certificate.
func (is *Issuer) Prepare(req Request) (*Token, error) {
	if req.PublicKey == nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "public_key", "the device public key is required")
	}
	if req.NotBefore.IsZero() {
		return nil, tacerr.Field(tacerr.InvalidInput, "not_before", "the issue time is required (record it in the intent so a replay builds the same certificate)")
	}
	serial := req.Serial
	if serial == nil {
		var err error
		if serial, err = policy.NewSerial(nil); err != nil {
			return nil, err
		}
	}
	dev := policy.Device{Serial: req.DeviceSerial, Manufacturer: req.Manufacturer, Model: req.Model, IMEIs: req.IMEIs}
	tmpl, err := is.profile.Template(dev, req.PublicKey, serial, req.NotBefore)
	if err != nil {
		return nil, err
	}
	// No certificate outlives its issuer: a fixed notAfter beyond the
	// issuer's was refused by New; a duration is capped at the issuer's.
	if tmpl.NotAfter.After(is.cert.NotAfter) {
		tmpl.NotAfter = is.cert.NotAfter.UTC()
	}
	tbs, err := buildTBS(tmpl, req.PublicKey, is.cert.RawSubject, is.cert.SubjectKeyId, is.sigAlg)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "build the certificate for device %s", req.DeviceSerial)
	}
	// The linting certificate: the exact TBS with the issuer's signature
	// algorithm and the throwaway key's signature (New), so zlint reads a
	// whole certificate whose signature algorithm is the one the HSM signs
	// with and whose signature value is a well-formed ECDSA signature.
	h := is.hash.New()
	h.Write(tbs)
	digest := h.Sum(nil)
	der, err := assemble(tbs, is.sigAlg, is.lintSig)
	if err != nil {
		return nil, err
	}
	found, err := is.lint.check(der)
	if err != nil {
		return nil, err
	}
	tok := &Token{issuer: is, tbs: tbs, digest: digest, lintDER: der, serial: new(big.Int).Set(serial), findings: found, device: req.DeviceSerial}
	for _, m := range req.IMEIs {
		tok.imeis = append(tok.imeis, m.String())
	}
	return tok, nil
}

// CheckDeviceKey applies to a device's public key alone the lints whose
// verdict depends on nothing else (e_ecdsa_small_private_key, unless the
// lint configuration skips or allows it), so that a caller refuses the key
// before it reserves IMEIs for a certificate Prepare would refuse. A
// refusal is csr_invalid on field csr.
func (is *Issuer) CheckDeviceKey(pub crypto.PublicKey) error { return is.lint.deviceKey(pub) }

// Issue signs the token's TBS bytes with the HSM key, once. A second call
// with the same token fails with invalid_state, whether or not the first
// succeeded; prepare again (same Serial and NotBefore give the same TBS) to
// retry after an HSM fault. The returned certificate's TBS is the linted TBS
// byte for byte and its signature verifies under the issuer's key.
func (is *Issuer) Issue(tok *Token) (*x509.Certificate, []byte, error) {
	if tok == nil || tok.issuer != is {
		return nil, nil, tacerr.New(tacerr.InvalidInput, "the token was not prepared by this issuer")
	}
	if is.upstream != nil {
		return nil, nil, tacerr.New(tacerr.Internal, "issuer %q signs through an upstream CA: use IssueUpstream", is.cert.Subject)
	}
	if !tok.used.CompareAndSwap(false, true) {
		return nil, nil, tacerr.New(tacerr.InvalidState, "the token for serial %x was already issued; tokens are single-use", tok.serial)
	}
	sig, err := is.signer.Sign(rand.Reader, tok.digest, is.hash)
	if err != nil {
		is.health.set(err)
		if _, ok := tacerr.As(err); ok {
			return nil, nil, err
		}
		return nil, nil, tacerr.Wrap(tacerr.HSMDeviceError, err, "the HSM failed to sign certificate serial %x", tok.serial)
	}
	// Verify before anything else: a wrong signature is not returned.
	if !ecdsa.VerifyASN1(is.pub, tok.digest, sig) {
		is.health.set(errBadProbe)
		return nil, nil, tacerr.New(tacerr.HSMDeviceError, "the HSM signature on serial %x does not verify under the issuer key; not returned", tok.serial)
	}
	is.health.set(nil)
	der, err := assemble(tok.tbs, is.sigAlg, sig)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, tacerr.Wrap(tacerr.Internal, err, "the signed certificate serial %x does not parse", tok.serial)
	}
	if !bytes.Equal(cert.RawTBSCertificate, tok.tbs) {
		return nil, nil, tacerr.New(tacerr.Internal, "the signed TBS of serial %x differs from the linted TBS; not returned", tok.serial)
	}
	return cert, der, nil
}

// IssueUpstream has the upstream CA sign the token's certificate for the
// device's CSR, once per token like Issue, and returns it only if its TBS is
// the linted TBS byte for byte and its signature verifies under the issuer
// key. Upstream errors are returned as they are.
func (is *Issuer) IssueUpstream(ctx context.Context, tok *Token, csr *x509.CertificateRequest) (*x509.Certificate, []byte, error) {
	if tok == nil || tok.issuer != is || is.upstream == nil {
		return nil, nil, tacerr.New(tacerr.InvalidInput, "the token was not prepared by this upstream issuer")
	}
	if !tok.used.CompareAndSwap(false, true) {
		return nil, nil, tacerr.New(tacerr.InvalidState, "the token for serial %x was already issued; tokens are single-use", tok.serial)
	}
	lint, err := tok.LintCertificate()
	if err != nil {
		return nil, nil, err
	}
	der, err := is.upstream.Sign(ctx, lint, csr, tok.device, tok.imeis)
	if err != nil {
		if is.upstream.Unreachable(err) {
			is.health.set(err) // Ready asks the CA before the next intent reserves anything
		}
		return nil, nil, err
	}
	is.health.set(nil)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, tacerr.Wrap(tacerr.UpstreamRefused, err, "the upstream certificate serial %x does not parse", tok.serial)
	}
	if !bytes.Equal(cert.RawTBSCertificate, tok.tbs) {
		return nil, nil, tacerr.New(tacerr.UpstreamRefused, "the upstream TBS of serial %x differs from the linted TBS; not returned", tok.serial)
	}
	if err := cert.CheckSignatureFrom(is.cert); err != nil {
		return nil, nil, tacerr.Wrap(tacerr.UpstreamRefused, err, "the upstream signature on serial %x does not verify under the issuer", tok.serial)
	}
	return cert, der, nil
}

// RevokeUpstream revokes the certificate serial (hex, as intents record it)
// at the upstream CA.
func (is *Issuer) RevokeUpstream(ctx context.Context, serialHex, reason string) error {
	if is.upstream == nil {
		return tacerr.New(tacerr.Internal, "issuer %q has no upstream CA", is.cert.Subject)
	}
	serial, ok := new(big.Int).SetString(serialHex, 16)
	if !ok {
		return tacerr.Field(tacerr.InvalidInput, "serial", "%q is not a hex serial", serialHex)
	}
	return is.upstream.Revoke(ctx, serial, reason)
}

var sigAlgOIDs = map[x509.SignatureAlgorithm]asn1.ObjectIdentifier{
	x509.ECDSAWithSHA256: {1, 2, 840, 10045, 4, 3, 2},
	x509.ECDSAWithSHA384: {1, 2, 840, 10045, 4, 3, 3},
}

// assemble builds Certificate ::= SEQUENCE { tbsCertificate,
// signatureAlgorithm, signatureValue } around the exact TBS bytes.
func assemble(tbs []byte, alg x509.SignatureAlgorithm, sig []byte) ([]byte, error) {
	out, err := der.Signed(tbs, sigAlgOIDs[alg], sig)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "assemble the certificate")
	}
	return out, nil
}
