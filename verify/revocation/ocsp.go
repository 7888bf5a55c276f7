package revocation

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tacline/tacline/tacerr"
)

// OCSPRequestType and OCSPResponseType are the media types of RFC 6960.
const (
	OCSPRequestType  = "application/ocsp-request"
	OCSPResponseType = "application/ocsp-response"
)

// MalformedOCSP is the DER of an OCSP "malformedRequest" response.
var MalformedOCSP = ocsp.MalformedRequestErrorResponse

// UnauthorizedOCSP is the DER of an OCSP "unauthorized" response (the
// issuer is not one of ours).
var UnauthorizedOCSP = ocsp.UnauthorizedErrorResponse

// matches reports whether the OCSP request names iss as the issuer.
func matches(req *ocsp.Request, iss Issuer) bool {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(iss.Cert.RawSubjectPublicKeyInfo, &spki); err != nil || !req.HashAlgorithm.Available() {
		return false
	}
	h := req.HashAlgorithm.New()
	h.Write(spki.PublicKey.RightAlign())
	return bytes.Equal(h.Sum(nil), req.IssuerKeyHash)
}

// RespondOCSP answers one DER OCSP request with a DER response signed by
// the issuer's key: good, revoked (with time and reason) or unknown (a
// serial the ledger never issued under that issuer). A malformed request
// gets MalformedOCSP and an invalid_input error; an issuer that is not
// ours gets UnauthorizedOCSP.
func (p *Publisher) RespondOCSP(ctx context.Context, der []byte) ([]byte, error) {
	req, err := ocsp.ParseRequest(der)
	if err != nil {
		return MalformedOCSP, tacerr.Field(tacerr.InvalidInput, "ocsp_request", "is not a DER OCSP request: %v", err)
	}
	var iss Issuer
	found := false
	for _, is := range p.Issuers() {
		if matches(req, is) {
			iss, found = is, true
			break
		}
	}
	if !found {
		return UnauthorizedOCSP, nil
	}
	now := p.now().UTC().Truncate(time.Second)
	tmpl := ocsp.Response{SerialNumber: req.SerialNumber, ThisUpdate: now, NextUpdate: now.Add(p.cfg.NextUpdate), IssuerHash: req.HashAlgorithm, Status: ocsp.Good}
	rec, err := p.db.CertificateBySerial(ctx, hex.EncodeToString(req.SerialNumber.Bytes()))
	if err != nil {
		return nil, err
	}
	switch {
	case rec == nil || rec.IssuerKeyID != iss.KeyID:
		tmpl.Status = ocsp.Unknown
	case !rec.RevokedAt.IsZero():
		tmpl.Status = ocsp.Revoked
		tmpl.RevokedAt = rec.RevokedAt.UTC().Truncate(time.Second)
		tmpl.RevocationReason = ReasonCode(rec.RevokeReason)
	}
	resp, err := ocsp.CreateResponse(iss.Cert, iss.Cert, tmpl, iss.Signer)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.HSMDeviceError, err, "sign the OCSP response of issuer %s", iss.KeyID)
	}
	return resp, nil
}
