package factory

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// The checks of VerifyIssued; every error it returns matches exactly one of
// them with errors.Is.
var (
	ErrMalformed       = errors.New("malformed response")
	ErrChain           = errors.New("certificate does not chain to a trusted root")
	ErrSAN             = errors.New("SAN URIs are not exactly the returned IMEIs")
	ErrIMEI            = errors.New("invalid IMEI")
	ErrIMEIOutsidePool = errors.New("IMEI outside the station's pools")
	ErrPublicKey       = errors.New("certificate key is not the device key")
	ErrDeviceSerial    = errors.New("device serial mismatch")
)

// MaxIMEIsPerDevice: registers accept 1 to 5 IMEIs per device (for
// factory/sim, which does not import imei).
const MaxIMEIsPerDevice = imei.MaxPerDevice

// PoolRange is a range of serial numbers of one TAC the station may receive
// IMEIs from (bounds inclusive).
type PoolRange struct {
	TAC      uint32
	SNRStart uint32
	SNREnd   uint32
}

// Contains reports whether m lies in the range.
func (r PoolRange) Contains(m imei.IMEI) bool {
	return m.TAC() == r.TAC && m.SNR() >= r.SNRStart && m.SNR() <= r.SNREnd
}

func (r PoolRange) String() string {
	return fmt.Sprintf("%s %06d-%06d", imei.FormatTAC(r.TAC), r.SNRStart, r.SNREnd)
}

// PoolRanges converts a GET /v1/pools answer to ranges. keep selects pools
// (nil keeps all). A malformed TAC or range is an error naming the pool.
func PoolRanges(list *wire.PoolList, keep func(wire.PoolStatus) bool) ([]PoolRange, error) {
	if list == nil {
		return nil, nil
	}
	var out []PoolRange
	for i, p := range list.Pools {
		if keep != nil && !keep(p) {
			continue
		}
		tac, err := imei.ParseTAC(p.TAC)
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "GET %s: pools[%d] (%q) has TAC %q", wire.PathPools, i, p.Name, p.TAC)
		}
		if p.SNRStart > p.SNREnd || p.SNREnd > imei.MaxSNR {
			return nil, tacerr.New(tacerr.Internal, "GET %s: pools[%d] (%q) has serial range %d-%d, not within 0-%d", wire.PathPools, i, p.Name, p.SNRStart, p.SNREnd, imei.MaxSNR)
		}
		out = append(out, PoolRange{TAC: tac, SNRStart: p.SNRStart, SNREnd: p.SNREnd})
	}
	return out, nil
}

// verifyErr is a verification failure: code verification_failed, the
// response field at fault, what was found, and the check (errors.Is).
func verifyErr(check error, field, format string, args ...any) error {
	e := tacerr.Field(tacerr.VerificationFailed, field, format, args...)
	e.Err = check
	return e
}

// DeviceIdentity is what a station knows of a device it provisions: its
// serial and the public key of the CSR it made (the private key stays in
// the device's secure element). [Device], the simulated device, is one.
type DeviceIdentity interface {
	Serial() string
	Public() crypto.PublicKey
}

// VerifyIssued checks an identity the server returned for dev before a
// station programs it: see the package comment for the checks. roots holds
// the trusted device roots; resp.Chain supplies the intermediates. allowed
// lists the station's pools; an IMEI must lie in one of them. Every call
// validates the whole path; a station checking many devices uses a
// Verifier, which verifies each issuer chain once.
func VerifyIssued(resp *wire.ProvisionResponse, roots *x509.CertPool, dev DeviceIdentity, allowed []PoolRange) error {
	if roots == nil {
		return tacerr.New(tacerr.InvalidInput, "VerifyIssued needs the trusted roots")
	}
	return verifyIssued(resp, dev, allowed, func(cert *x509.Certificate) error {
		inter := x509.NewCertPool()
		if strings.TrimSpace(resp.Chain) != "" {
			chain, err := parseCerts(resp.Chain)
			if err != nil {
				return verifyErr(ErrMalformed, "chain", "%v", err)
			}
			for _, c := range chain {
				inter.AddCert(c)
			}
		}
		return verifyPath(cert, roots, inter, time.Now())
	})
}

// verifyPath runs RFC 5280 path validation from cert to roots.
func verifyPath(cert *x509.Certificate, roots, inter *x509.CertPool, now time.Time) error {
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // device certificates may carry no EKU
	}); err != nil {
		return verifyErr(ErrChain, "certificate", "certificate serial %x (subject %q) does not verify to a trusted device root: %v", cert.SerialNumber, cert.Subject, err)
	}
	return nil
}

// verifyIssued runs every check but the path validation, which chain does.
func verifyIssued(resp *wire.ProvisionResponse, dev DeviceIdentity, allowed []PoolRange, chain func(*x509.Certificate) error) error {
	if resp == nil {
		return verifyErr(ErrMalformed, "", "no response")
	}
	if dev == nil {
		return tacerr.New(tacerr.InvalidInput, "VerifyIssued needs the device")
	}
	if resp.DeviceSerial != dev.Serial() {
		return verifyErr(ErrDeviceSerial, "device_serial", "the response is for device %q, the request was for %q", resp.DeviceSerial, dev.Serial())
	}
	certs, err := parseCerts(resp.Certificate)
	if err != nil {
		return verifyErr(ErrMalformed, "certificate", "%v", err)
	}
	if len(certs) != 1 {
		return verifyErr(ErrMalformed, "certificate", "holds %d certificates; want exactly the device certificate (issuers go in chain)", len(certs))
	}
	cert := certs[0]
	if err := chain(cert); err != nil {
		return err
	}
	if cert.Subject.SerialNumber != dev.Serial() {
		return verifyErr(ErrDeviceSerial, "certificate", "certificate subject serialNumber is %q, the device is %q", cert.Subject.SerialNumber, dev.Serial())
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(dev.Public()) {
		return verifyErr(ErrPublicKey, "certificate", "certificate serial %x certifies another key than device %s's own", cert.SerialNumber, dev.Serial())
	}
	ims, err := checkIMEIs(resp.IMEIs, allowed)
	if err != nil {
		return err
	}
	return checkSAN(cert, ims)
}

// maxCachedChains bounds a Verifier's cache; further chains are verified
// in full every time.
const maxCachedChains = 64

// Verifier runs VerifyIssued's checks for a station that checks many
// devices. It verifies each distinct issuer chain (resp.Chain) to the roots
// once and then trusts the issuers of that chain that verified, so that a
// device certificate costs one signature check instead of one per chain
// level. Issuers that carry name constraints are never trusted this way, and
// a device certificate that fails against the trusted issuers is validated
// along the whole path again, so Verify accepts exactly what VerifyIssued
// accepts. It is safe for concurrent use.
type Verifier struct {
	roots *x509.CertPool
	mu    sync.Mutex
	cache map[string]*issuerChain
}

// issuerChain is one parsed chain: its certificates as intermediates, and
// those that verified to the roots as anchors.
type issuerChain struct {
	inter   *x509.CertPool
	anchors *x509.CertPool // nil when none verified
	err     error          // the chain did not parse
}

// NewVerifier returns a Verifier for the trusted device roots.
func NewVerifier(roots *x509.CertPool) *Verifier {
	return &Verifier{roots: roots, cache: map[string]*issuerChain{}}
}

// Verify is VerifyIssued(resp, roots, dev, allowed) with the issuer cache.
func (v *Verifier) Verify(resp *wire.ProvisionResponse, dev DeviceIdentity, allowed []PoolRange) error {
	if v == nil || v.roots == nil {
		return tacerr.New(tacerr.InvalidInput, "a Verifier needs the trusted roots")
	}
	return verifyIssued(resp, dev, allowed, func(cert *x509.Certificate) error {
		ic := v.chain(resp.Chain)
		if ic.err != nil {
			return ic.err
		}
		now := time.Now()
		if ic.anchors != nil {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ic.anchors, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				return nil
			}
		}
		return verifyPath(cert, v.roots, ic.inter, now)
	})
}

// chain returns the parsed and verified issuer chain of pemChain.
func (v *Verifier) chain(pemChain string) *issuerChain {
	v.mu.Lock()
	ic, ok := v.cache[pemChain]
	v.mu.Unlock()
	if ok {
		return ic
	}
	ic = &issuerChain{inter: x509.NewCertPool()}
	var certs []*x509.Certificate
	if strings.TrimSpace(pemChain) != "" {
		var err error
		if certs, err = parseCerts(pemChain); err != nil {
			ic.err = verifyErr(ErrMalformed, "chain", "%v", err)
		}
	}
	for _, c := range certs {
		ic.inter.AddCert(c)
	}
	now := time.Now()
	for _, c := range certs {
		if !c.IsCA || hasNameConstraints(c) {
			continue
		}
		chains, err := c.Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: ic.inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err != nil || constrainedPath(chains) {
			continue
		}
		if ic.anchors == nil {
			ic.anchors = x509.NewCertPool()
		}
		ic.anchors.AddCert(c)
	}
	v.mu.Lock()
	if len(v.cache) < maxCachedChains {
		v.cache[pemChain] = ic
	}
	v.mu.Unlock()
	return ic
}

func hasNameConstraints(c *x509.Certificate) bool {
	return len(c.PermittedDNSDomains)+len(c.ExcludedDNSDomains)+len(c.PermittedIPRanges)+len(c.ExcludedIPRanges)+
		len(c.PermittedEmailAddresses)+len(c.ExcludedEmailAddresses)+len(c.PermittedURIDomains)+len(c.ExcludedURIDomains) > 0 ||
		c.PermittedDNSDomainsCritical
}

// constrainedPath reports whether any certificate above the issuer on a
// verified path constrains names (they would bind the device certificate).
func constrainedPath(chains [][]*x509.Certificate) bool {
	for _, ch := range chains {
		for _, c := range ch {
			if hasNameConstraints(c) {
				return true
			}
		}
	}
	return false
}

// checkIMEIs parses the returned IMEIs: 1 to 5, 15 digits each, valid,
// distinct and inside the station's pools.
func checkIMEIs(list []string, allowed []PoolRange) ([]imei.IMEI, error) {
	if len(list) == 0 || len(list) > MaxIMEIsPerDevice {
		return nil, verifyErr(ErrIMEI, "imeis", "the response has %d IMEIs; a device has 1 to %d", len(list), MaxIMEIsPerDevice)
	}
	out := make([]imei.IMEI, 0, len(list))
	for i, s := range list {
		field := fmt.Sprintf("imeis[%d]", i)
		if len(s) != 15 {
			return nil, verifyErr(ErrIMEI, field, "%q is not a 15-digit IMEI with check digit", s)
		}
		m, err := imei.Parse(s)
		if err != nil {
			return nil, verifyErr(ErrIMEI, field, "%v", err)
		}
		if slices.Contains(out, m) {
			return nil, verifyErr(ErrIMEI, field, "IMEI %s is returned twice", s)
		}
		if !slices.ContainsFunc(allowed, func(r PoolRange) bool { return r.Contains(m) }) {
			return nil, verifyErr(ErrIMEIOutsidePool, field, "IMEI %s (TAC %s, SNR %s) is in none of the station's pools %v", s, m.TACString(), m.SNRString(), allowed)
		}
		out = append(out, m)
	}
	return out, nil
}

// checkSAN requires the certificate's URI SANs to be exactly the URNs of
// ims: every URI an IMEI URN, each returned IMEI once, nothing else.
func checkSAN(cert *x509.Certificate, ims []imei.IMEI) error {
	var inCert []imei.IMEI
	for _, u := range cert.URIs {
		m, err := imei.ParseURN(u.String())
		if err != nil {
			return verifyErr(ErrSAN, "certificate", "SAN URI %q is not an IMEI URN: %v", u, err)
		}
		if slices.Contains(inCert, m) {
			return verifyErr(ErrSAN, "certificate", "SAN names IMEI %s twice", m)
		}
		inCert = append(inCert, m)
	}
	for _, m := range ims {
		if !slices.Contains(inCert, m) {
			return verifyErr(ErrSAN, "certificate", "returned IMEI %s is not in the certificate's SAN (SAN has %d IMEI URNs)", m, len(inCert))
		}
	}
	if len(inCert) != len(ims) {
		return verifyErr(ErrSAN, "certificate", "the certificate's SAN names %d IMEIs, the response returned %d", len(inCert), len(ims))
	}
	return nil
}

// parseCerts decodes PEM CERTIFICATE blocks (internal/pemblock's rules);
// anything else is an error, its message without code (callers give it
// theirs).
func parseCerts(s string) ([]*x509.Certificate, error) {
	certs, err := pemblock.Certificates([]byte(s), tacerr.InvalidInput, "")
	if e, ok := tacerr.As(err); ok {
		return nil, errors.New(e.Message)
	}
	return certs, err
}

// LoadRoots reads the trusted device roots from a PEM file such as the
// demo's ca-chain.pem. The file may also hold intermediates; only
// self-signed certificates become trust anchors (responses carry their
// intermediates in chain).
func LoadRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "roots_file", "a PEM file with the device root certificate is required")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "roots_file: cannot read %s", file)
	}
	certs, err := parseCerts(string(data))
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "roots_file", "%s: %v", file, err)
	}
	pool := x509.NewCertPool()
	n := 0
	for _, c := range certs {
		if bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil {
			pool.AddCert(c)
			n++
		}
	}
	if n == 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "roots_file", "%s holds %d certificates but no self-signed root; add the device root", file, len(certs))
	}
	return pool, nil
}
