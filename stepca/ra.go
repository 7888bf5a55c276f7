// Package stepca lets tacline work inside a manufacturer's step-ca PKI
// (github.com/smallstep/certificates), through step-ca's own `ca` client and
// `api` types:
//
//   - RA: tacline as the registration authority in front of step-ca. It asks
//     step-ca's /1.0/sign to sign a device's CSR with a one-time token signed
//     by tacline's RA key in the HSM (a JWK provisioner whose key is that
//     key's public half), carrying the certificate tacline built and linted;
//     it checks what comes back (RA.Sign) and revokes at step-ca by serial
//     (RA.Revoke).
//   - DeviceProvisioner and DeviceTemplate: the provisioner an operator adds
//     to step-ca's ca.json for it.
//
// It promises: RA.Sign returns a certificate only if its TBSCertificate is
// byte for byte the linted one (so every field tacline fixes is what step-ca
// signed), its signature verifies under step-ca's issuing CA and that CA
// chains to the configured step-ca root. Failures are classified for the
// caller: step-ca unreachable (nothing was signed: unavailable, retry),
// step-ca refused (nothing was signed: upstream_refused), and outcomes where
// step-ca may have signed (a timeout, a server error, a wrong certificate:
// upstream_refused with Ambiguous set), after which the serial must be
// revoked at step-ca before the intent is given up.
package stepca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/ca"
	"github.com/smallstep/certificates/errs"
	"github.com/smallstep/cli-utils/token"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/randutil"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// Config is the `stepca` section of tacline's configuration (issuer kind
// stepca).
type Config struct {
	// URL of step-ca (https://ca.example:9000).
	URL string `yaml:"url" doc:"step-ca's https URL (https://ca.example:9000)"`
	// Root is the PEM file of step-ca's root certificate (root_ca.crt):
	// the TLS connection to step-ca and every device certificate chain
	// are checked against it.
	Root string `yaml:"root" doc:"PEM file of step-ca's root (root_ca.crt): the TLS to step-ca and every device chain are checked against it"`
	// IssuerCert is the PEM file of step-ca's issuing (intermediate) CA
	// certificate (intermediate_ca.crt): tacline builds and lints device
	// certificates under its name and key identifier.
	IssuerCert string `yaml:"issuer_cert" doc:"PEM file of step-ca's issuing CA (intermediate_ca.crt), under whose name and key id certificates are built and linted"`
	// Provisioner is the name of the JWK provisioner that trusts tacline's
	// RA key (`tacline stepca provisioner` prints it).
	Provisioner string `yaml:"provisioner" doc:"name of the JWK provisioner that trusts tacline's RA key (tacline stepca provisioner prints it)"`
	// KeyLabel is the label of the RA key in tacline's HSM (P-256).
	KeyLabel string `yaml:"key_label" doc:"label of the RA key (P-256) in tacline's HSM that signs the one-time tokens"`
	// Timeout of one sign or revoke request (default 10s).
	Timeout time.Duration `yaml:"timeout" doc:"one sign or revoke request at step-ca (default 10s)"`
}

// Validate names the first wrong field.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if c.URL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		return tacerr.Field(tacerr.InvalidConfig, "stepca.url", "must be step-ca's https URL (https://ca.example:9000), got %q", c.URL)
	}
	for _, f := range []struct{ name, v string }{{"stepca.root", c.Root}, {"stepca.issuer_cert", c.IssuerCert}, {"stepca.provisioner", c.Provisioner}, {"stepca.key_label", c.KeyLabel}} {
		if strings.TrimSpace(f.v) == "" {
			return tacerr.Field(tacerr.InvalidConfig, f.name, "is required in the stepca section (issuer kind stepca, or kept after switching back to an HSM issuer)")
		}
	}
	if c.Timeout < 0 || c.Timeout > 10*time.Minute {
		return tacerr.Field(tacerr.InvalidConfig, "stepca.timeout", "must be between 0 (default 10s) and 10m, got %s", c.Timeout)
	}
	return nil
}

// RA signs device certificates at step-ca as tacline's registration
// authority. It is safe for concurrent use.
type RA struct {
	cfg     Config
	client  *ca.Client
	signer  crypto.Signer
	root    *x509.Certificate
	issuer  *x509.Certificate
	audSign string
	timeout time.Duration
}

// New loads the root and issuer certificates named by cfg, checks that the
// issuer chains to the root, and returns an RA whose tokens signer (the RA
// key, in the HSM) signs.
func New(cfg Config, signer crypto.Signer) (*RA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if signer == nil {
		return nil, tacerr.Field(tacerr.InvalidConfig, "stepca.key_label", "the RA key is required")
	}
	root, err := readCert(cfg.Root, "stepca.root")
	if err != nil {
		return nil, err
	}
	issuer, err := readCert(cfg.IssuerCert, "stepca.issuer_cert")
	if err != nil {
		return nil, err
	}
	if err := issuer.CheckSignatureFrom(root); err != nil {
		return nil, tacerr.Field(tacerr.InvalidConfig, "stepca.issuer_cert", "%q is not signed by the root in stepca.root (%q): %v", issuer.Subject, root.Subject, err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	client, err := newClient(cfg.URL, cfg.Root, timeout)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "step-ca client for %s", cfg.URL)
	}
	base := strings.TrimRight(cfg.URL, "/")
	return &RA{cfg: cfg, client: client, signer: signer, root: root, issuer: issuer,
		audSign: base + "/1.0/sign", timeout: timeout}, nil
}

// IssuerCertificate is step-ca's issuing CA certificate.
func (r *RA) IssuerCertificate() *x509.Certificate { return r.issuer }

// Root is step-ca's root certificate.
func (r *RA) Root() *x509.Certificate { return r.root }

// Client is the underlying step-ca client.
func (r *RA) Client() *ca.Client { return r.client }

// Claims is what the token's "tacline" claim carries: the certificate
// tacline built and linted, for DeviceTemplate, plus readable copies of the
// device data for step-ca's logs and webhooks.
type Claims struct {
	Subject    []byte      `json:"subject"` // DER Name
	Serial     string      `json:"serial"`  // 0x-prefixed hex
	NotBefore  time.Time   `json:"not_before"`
	NotAfter   time.Time   `json:"not_after"`
	Extensions []Extension `json:"extensions"`
	Device     string      `json:"device"`
	IMEIs      []string    `json:"imeis,omitempty"`
}

// Extension is one certificate extension as step-ca's templates take it.
type Extension struct {
	ID       string `json:"id"`
	Critical bool   `json:"critical"`
	Value    []byte `json:"value"`
}

// ClaimsOf returns the claims that make step-ca sign exactly the TBS of
// the linted certificate lint.
func ClaimsOf(lint *x509.Certificate, device string, imeis []string) Claims {
	c := Claims{Subject: lint.RawSubject, Serial: "0x" + lint.SerialNumber.Text(16), NotBefore: lint.NotBefore.UTC(),
		NotAfter: lint.NotAfter.UTC(), Device: device, IMEIs: imeis}
	for _, e := range lint.Extensions {
		c.Extensions = append(c.Extensions, Extension{ID: e.Id.String(), Critical: e.Critical, Value: e.Value})
	}
	return c
}

// signToken is a one-time token for /1.0/sign: subject and SANs are the
// CSR's own (step-ca checks the CSR against them), the tacline claim
// carries the certificate.
func (r *RA) signToken(csr *x509.CertificateRequest, c Claims) (string, error) {
	sub := csr.Subject.CommonName
	var sans []string
	sans = append(sans, csr.DNSNames...)
	sans = append(sans, csr.EmailAddresses...)
	for _, ip := range csr.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range csr.URIs {
		sans = append(sans, u.String())
	}
	if sub == "" {
		sub = c.Device
	}
	return r.token(r.audSign, sub, sans, map[string]any{ClaimName: c})
}

func (r *RA) token(aud, sub string, sans []string, extra map[string]any) (string, error) {
	return newToken(r.cfg.Provisioner, r.signer, aud, sub, sans, extra)
}

// newToken is a one-time token (5 minutes) of JWK provisioner name, signed
// ES256 by key.
func newToken(name string, key crypto.Signer, aud, sub string, sans []string, extra map[string]any) (string, error) {
	jti, err := randutil.Hex(32)
	if err != nil {
		return "", tacerr.Wrap(tacerr.Internal, err, "token id")
	}
	now := time.Now()
	opts := []token.Options{token.WithJWTID(jti), token.WithIssuer(name), token.WithAudience(aud),
		token.WithSubject(sub), token.WithValidity(now.Add(-time.Minute), now.Add(5*time.Minute))}
	if sans != nil {
		opts = append(opts, token.WithSANS(sans))
	}
	cl, err := token.NewClaims(opts...)
	if err != nil {
		return "", tacerr.Wrap(tacerr.Internal, err, "token claims")
	}
	for k, v := range extra {
		cl.Set(k, v)
	}
	tok, err := cl.Sign(jose.ES256, key)
	if err != nil {
		if _, ok := tacerr.As(err); ok {
			return "", err
		}
		return "", tacerr.Wrap(tacerr.HSMDeviceError, err, "sign the step-ca token")
	}
	return tok, nil
}

// Failure is an error from step-ca with what it means for the intent.
type Failure struct {
	Err *tacerr.Error
	// Ambiguous: step-ca may have signed a certificate with the intent's
	// serial (timeout, server error, a wrong certificate returned); revoke
	// the serial before giving the intent up.
	Ambiguous bool
	// Reason is a short word for metrics: unreachable, refused, timeout,
	// server_error, mismatch.
	Reason string
}

func (f *Failure) Error() string { return f.Err.Error() }

// MayHaveSigned reports Ambiguous (for callers that do not import stepca).
func (f *Failure) MayHaveSigned() bool { return f.Ambiguous }

// FailureReason reports Reason.
func (f *Failure) FailureReason() string { return f.Reason }
func (f *Failure) Unwrap() error         { return f.Err }

// AsFailure returns err's Failure, if it is one.
func AsFailure(err error) (*Failure, bool) {
	var f *Failure
	ok := errors.As(err, &f)
	return f, ok
}

// Sign asks step-ca to sign csr with the certificate lint fixes and
// returns the certificate (DER) once its TBS equals lint's, its signature
// verifies under step-ca's issuing CA and that CA chains to the root. The
// error is a *Failure.
func (r *RA) Sign(ctx context.Context, lint *x509.Certificate, csr *x509.CertificateRequest, device string, imeis []string) ([]byte, error) {
	serial := lint.SerialNumber
	tok, err := r.signToken(csr, ClaimsOf(lint, device, imeis))
	if err != nil {
		return nil, err
	}
	signCtx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.client.SignWithContext(signCtx, &api.SignRequest{CsrPEM: api.NewCertificateRequest(csr), OTT: tok})
	if err != nil {
		return nil, classify(err, serial)
	}
	if resp.ServerPEM.Certificate == nil {
		return nil, &Failure{Err: tacerr.New(tacerr.UpstreamRefused, "step-ca returned no certificate for serial %x", serial), Ambiguous: true, Reason: "mismatch"}
	}
	got := resp.ServerPEM.Certificate
	if err := r.check(got, lint, resp); err != nil {
		return nil, &Failure{Err: tacerr.New(tacerr.UpstreamRefused, "step-ca's certificate for serial %x is not the one tacline linted: %v; not bound%s",
			serial, err, r.revokeStray(ctx, got, lint)), Ambiguous: true, Reason: "mismatch"}
	}
	return got.Raw, nil
}

// revokeStray revokes at step-ca a refused certificate that step-ca
// signed under another serial than tacline's for the device's key (a
// template that drops or rewrites the serial): the caller revokes
// tacline's serial only, and the device's certificate would stay valid,
// known to no ledger. A certificate that does not verify under step-ca's
// issuing CA, or certifies another key, is left alone (it may be nobody's,
// or another device's). It returns what to add to the error.
func (r *RA) revokeStray(ctx context.Context, got, lint *x509.Certificate) string {
	if got.SerialNumber.Cmp(lint.SerialNumber) == 0 || string(got.RawSubjectPublicKeyInfo) != string(lint.RawSubjectPublicKeyInfo) ||
		got.CheckSignatureFrom(r.issuer) != nil {
		return ""
	}
	if err := r.Revoke(ctx, got.SerialNumber, "mismatch"); err != nil {
		return fmt.Sprintf("; step-ca signed the device's key under serial %x, and revoking it failed (%v): revoke it at step-ca (`step ca revoke %s`)", got.SerialNumber, err, got.SerialNumber)
	}
	return fmt.Sprintf("; step-ca signed the device's key under serial %x, revoked at step-ca", got.SerialNumber)
}

// check verifies a certificate step-ca returned against the linted one.
func (r *RA) check(got, lint *x509.Certificate, resp *api.SignResponse) error {
	// Compared as encoded (a key type crypto/x509 cannot parse has no
	// PublicKey to compare).
	if string(got.RawSubjectPublicKeyInfo) != string(lint.RawSubjectPublicKeyInfo) {
		return errors.New("its public key is not the CSR's")
	}
	if string(got.RawTBSCertificate) != string(lint.RawTBSCertificate) {
		return fmt.Errorf("its TBSCertificate differs (%s)", diff(got, lint))
	}
	if err := got.CheckSignatureFrom(r.issuer); err != nil {
		return fmt.Errorf("its signature does not verify under step-ca's issuing CA %q: %v", r.issuer.Subject, err)
	}
	if resp.CaPEM.Certificate != nil && !resp.CaPEM.Certificate.Equal(r.issuer) {
		return fmt.Errorf("step-ca named issuing CA %q, not the configured %q", resp.CaPEM.Certificate.Subject, r.issuer.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(r.root)
	inter := x509.NewCertPool()
	inter.AddCert(r.issuer)
	if _, err := got.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: got.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("it does not chain to the configured step-ca root: %v", err)
	}
	return nil
}

// diff names the first field that differs between two certificates.
func diff(got, want *x509.Certificate) string {
	switch {
	case got.SerialNumber.Cmp(want.SerialNumber) != 0:
		return fmt.Sprintf("serial %x, want %x", got.SerialNumber, want.SerialNumber)
	case string(got.RawSubject) != string(want.RawSubject):
		return fmt.Sprintf("subject %q, want %q", got.Subject, want.Subject)
	case string(got.RawIssuer) != string(want.RawIssuer):
		return fmt.Sprintf("issuer %q, want %q", got.Issuer, want.Issuer)
	case !got.NotBefore.Equal(want.NotBefore) || !got.NotAfter.Equal(want.NotAfter):
		return fmt.Sprintf("validity %s..%s, want %s..%s", got.NotBefore, got.NotAfter, want.NotBefore, want.NotAfter)
	case len(got.Extensions) != len(want.Extensions):
		return fmt.Sprintf("%d extensions, want %d", len(got.Extensions), len(want.Extensions))
	}
	for i := range got.Extensions {
		g, w := got.Extensions[i], want.Extensions[i]
		if !g.Id.Equal(w.Id) || g.Critical != w.Critical || string(g.Value) != string(w.Value) {
			return fmt.Sprintf("extension %d is %s, want %s", i, g.Id, w.Id)
		}
	}
	return "encoding"
}

// Health asks step-ca's /health.
func (r *RA) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if _, err := r.client.HealthWithContext(ctx); err != nil {
		return classify(err, nil)
	}
	return nil
}

// Unreachable reports whether err (from Sign) means step-ca was not
// reached, so nothing was signed.
func (r *RA) Unreachable(err error) bool {
	f, ok := AsFailure(err)
	return ok && f.Reason == "unreachable"
}

// Revoke revokes serial at step-ca (passive revocation: step-ca's CRL and
// its database). A serial already revoked counts as revoked.
func (r *RA) Revoke(ctx context.Context, serial *big.Int, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return RevokeSerial(ctx, r.client, r.cfg.Provisioner, r.signer, serial, reason)
}

// RevokeSerial revokes serial at step-ca with a one-time token of a JWK
// provisioner (name, key), as `step ca revoke` does. A serial already
// revoked counts as revoked.
func RevokeSerial(ctx context.Context, client *ca.Client, provisioner string, key crypto.Signer, serial *big.Int, reason string) error {
	aud := strings.TrimRight(client.GetCaURL(), "/") + "/1.0/revoke"
	tok, err := newToken(provisioner, key, aud, serial.String(), nil, nil)
	if err != nil {
		return err
	}
	_, err = client.RevokeWithContext(ctx, &api.RevokeRequest{Serial: serial.String(), OTT: tok, Reason: reason, Passive: true}, nil)
	if err != nil {
		var se *errs.Error
		if errors.As(err, &se) && se.StatusCode() == 400 && strings.Contains(se.Error(), "already revoked") {
			return nil
		}
		return classify(err, serial)
	}
	return nil
}

// classify turns a step-ca client error into a Failure; serial, when not
// nil, is the certificate serial the request was about.
func classify(err error, serial *big.Int) error {
	what := "the request"
	if serial != nil {
		what = fmt.Sprintf("serial %x", serial)
	}
	var re *RedirectError
	if errors.As(err, &re) {
		return &Failure{Err: tacerr.Wrap(tacerr.UpstreamRefused, re, "step-ca did not answer %s", what), Ambiguous: true, Reason: "server_error"}
	}
	var se *errs.Error
	if errors.As(err, &se) {
		if se.StatusCode() >= 500 {
			return &Failure{Err: tacerr.Wrap(tacerr.UpstreamRefused, err, "step-ca failed on %s (HTTP %d)", what, se.StatusCode()), Ambiguous: true, Reason: "server_error"}
		}
		return &Failure{Err: tacerr.Wrap(tacerr.UpstreamRefused, err, "step-ca refused %s (HTTP %d): %s", what, se.StatusCode(), se.Error()), Reason: "refused"}
	}
	// A failed dial, or a failed write on a kept-alive connection step-ca
	// had closed (it stopped), never delivered the request.
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "write") {
		return &Failure{Err: tacerr.Wrap(tacerr.Unavailable, err, "step-ca is unreachable; retry"), Reason: "unreachable"}
	}
	return &Failure{Err: tacerr.Wrap(tacerr.UpstreamRefused, err, "no answer from step-ca for %s", what), Ambiguous: true, Reason: "timeout"}
}

func readCert(path, field string) (*x509.Certificate, error) {
	certs, err := pemblock.CertFile(path, tacerr.InvalidConfig, field)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, tacerr.Field(tacerr.InvalidConfig, field, "%s holds %d certificates; give the one certificate", path, len(certs))
	}
	return certs[0], nil
}

// Retired is the upstream of a step-ca issuing CA that step-ca no longer
// signs under (step-ca's intermediate was rotated and stepca.issuer_cert
// names the new one): the certificates issued under it stay tacline's
// (replays answer them with its chain) and are revoked at step-ca by
// serial as before, but a request prepared under it cannot be signed any
// more. It is safe for concurrent use.
type Retired struct {
	ra     *RA
	issuer *x509.Certificate
}

// Retired returns the upstream of issuer, a former issuing CA of this
// RA's step-ca.
func (r *RA) Retired(issuer *x509.Certificate) *Retired { return &Retired{ra: r, issuer: issuer} }

// Sign refuses: step-ca signs under its current issuing CA only, whose
// certificate would not be the one linted under the retired one. The
// refusal is ambiguous, so the caller revokes the serial at step-ca before
// it gives the intent up (an earlier attempt may have been signed before
// the rotation, its answer lost).
func (x *Retired) Sign(_ context.Context, lint *x509.Certificate, _ *x509.CertificateRequest, _ string, _ []string) ([]byte, error) {
	why := fmt.Sprintf("which step-ca no longer signs under (stepca.issuer_cert names %q)", x.ra.issuer.Subject)
	if x.issuer.Equal(x.ra.issuer) {
		why = "under which tacline no longer issues (issuer.kind is not stepca)"
	}
	return nil, &Failure{Err: tacerr.New(tacerr.UpstreamRefused,
		"serial %x was prepared under step-ca's issuing CA %q, %s: the request cannot be completed; provision the device again with a new request id",
		lint.SerialNumber, x.issuer.Subject, why), Ambiguous: true, Reason: "refused"}
}

// Revoke revokes serial at step-ca (RA.Revoke).
func (x *Retired) Revoke(ctx context.Context, serial *big.Int, reason string) error {
	return x.ra.Revoke(ctx, serial, reason)
}

// Health asks step-ca's /health (RA.Health).
func (x *Retired) Health(ctx context.Context) error { return x.ra.Health(ctx) }

// Unreachable is RA.Unreachable.
func (x *Retired) Unreachable(err error) bool { return x.ra.Unreachable(err) }
