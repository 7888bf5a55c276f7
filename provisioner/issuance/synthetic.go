package issuance

import (
	"crypto/rand"

	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// SignSynthetic builds req's certificate as Prepare does and signs it with
// the issuer's signer at once, without the lint and the checks of Issue:
// it makes the certificates of a benchmark ledger's synthetic devices
// (`tacline bench provision --prefill`, signed by a throwaway software key
// of a bench-only issuer), never a device's certificate. It returns the
// certificate and its TBS.
func (is *Issuer) SignSynthetic(req Request) (der, tbs []byte, err error) {
	if req.Serial == nil || req.NotBefore.IsZero() || req.PublicKey == nil || is.signer == nil {
		return nil, nil, tacerr.New(tacerr.InvalidInput, "synthetic certificate: serial, issue time, public key and a signer are required")
	}
	dev := policy.Device{Serial: req.DeviceSerial, Manufacturer: req.Manufacturer, Model: req.Model, IMEIs: req.IMEIs}
	tmpl, err := is.profile.Template(dev, req.PublicKey, req.Serial, req.NotBefore)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.NotAfter.After(is.cert.NotAfter) {
		tmpl.NotAfter = is.cert.NotAfter.UTC()
	}
	if tbs, err = buildTBS(tmpl, req.PublicKey, is.cert.RawSubject, is.cert.SubjectKeyId, is.sigAlg); err != nil {
		return nil, nil, tacerr.Wrap(tacerr.InvalidInput, err, "build the certificate for device %s", req.DeviceSerial)
	}
	h := is.hash.New()
	h.Write(tbs)
	sig, err := is.signer.Sign(rand.Reader, h.Sum(nil), is.hash)
	if err != nil {
		return nil, nil, tacerr.Wrap(tacerr.Internal, err, "sign synthetic certificate")
	}
	der, err = assemble(tbs, is.sigAlg, sig)
	return der, tbs, err
}
