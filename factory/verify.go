package factory

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
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

// maxIMEIsPerDevice: registers accept 1 to 5 IMEIs per device.
const maxIMEIsPerDevice = 5

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
	return &tacerr.Error{Code: tacerr.VerificationFailed, Field: field, Message: fmt.Sprintf(format, args...), Err: check}
}

// VerifyIssued checks an identity the server returned for dev before a
// station programs it: see the package comment for the checks. roots holds
// the trusted device roots; resp.Chain supplies the intermediates. allowed
// lists the station's pools; an IMEI must lie in one of them.
func VerifyIssued(resp *wire.ProvisionResponse, roots *x509.CertPool, dev *Device, allowed []PoolRange) error {
	return verifyIssuedAt(resp, roots, dev, allowed, time.Now())
}

func verifyIssuedAt(resp *wire.ProvisionResponse, roots *x509.CertPool, dev *Device, allowed []PoolRange, now time.Time) error {
	if resp == nil {
		return verifyErr(ErrMalformed, "", "no response")
	}
	if dev == nil || roots == nil {
		return tacerr.New(tacerr.InvalidInput, "VerifyIssued needs the device and the trusted roots")
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
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // device certificates may carry no EKU
	}); err != nil {
		return verifyErr(ErrChain, "certificate", "certificate serial %x (subject %q) does not verify to a trusted device root: %v", cert.SerialNumber, cert.Subject, err)
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

// checkIMEIs parses the returned IMEIs: 1 to 5, 15 digits each, valid,
// distinct and inside the station's pools.
func checkIMEIs(list []string, allowed []PoolRange) ([]imei.IMEI, error) {
	if len(list) == 0 || len(list) > maxIMEIsPerDevice {
		return nil, verifyErr(ErrIMEI, "imeis", "the response has %d IMEIs; a device has 1 to %d", len(list), maxIMEIsPerDevice)
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

// parseCerts decodes PEM CERTIFICATE blocks; anything else is an error.
func parseCerts(s string) ([]*x509.Certificate, error) {
	rest := bytes.TrimSpace([]byte(s))
	if len(rest) == 0 {
		return nil, errors.New("is empty; want PEM CERTIFICATE blocks")
	}
	var out []*x509.Certificate
	for i := 1; len(rest) > 0; i++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("PEM block %d: not a PEM block", i)
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d: type %q, want CERTIFICATE", i, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %v", i, err)
		}
		out = append(out, c)
		rest = bytes.TrimSpace(rest)
	}
	return out, nil
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
