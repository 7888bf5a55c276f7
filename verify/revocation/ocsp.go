package revocation

import (
	"bytes"
	"context"
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

// InternalErrorOCSP is the DER of an OCSP "internalError" response.
var InternalErrorOCSP = ocsp.InternalErrorErrorResponse

// MaxOCSPEntries bounds the entries of one request.
const MaxOCSPEntries = 64

// OCSPAnswer is a DER OCSP response and what HTTP caching needs to know
// of it (RFC 5019 6): ThisUpdate and NextUpdate are zero for error
// responses, and Nonce says the response echoes the request's nonce (so
// it must not be cached).
type OCSPAnswer struct {
	DER                    []byte
	ThisUpdate, NextUpdate time.Time
	Nonce                  bool
}

// RespondOCSP answers a DER OCSP request (RFC 6960) with one SingleResponse
// per entry: good, revoked (with time and reason) or unknown (a serial
// the ledger never issued under that issuer, or an entry naming another
// issuer than the one the response is signed for). The response is signed
// by the delegated OCSP responder of the issuer named by the first entry
// that names one of ours; it echoes the request's nonce (RFC 8954, 1 to 32
// octets) and its producedAt is the signing time to the second. Signed
// requests are accepted (the signature is not checked: answers are
// public). A malformed request gets MalformedOCSP and an invalid_input
// error; a request naming none of our issuers gets UnauthorizedOCSP. Any
// other failure gets InternalErrorOCSP and its error, which is logged here:
// callers answer the OCSP response and keep the error to themselves.
func (p *Publisher) RespondOCSP(ctx context.Context, der []byte) (OCSPAnswer, error) {
	ans, err := p.respondOCSP(ctx, der)
	if err != nil && bytes.Equal(ans.DER, InternalErrorOCSP) {
		p.log.Error("OCSP request answered internalError", "code", string(tacerr.CodeOf(err)), "err", err.Error())
	}
	return ans, err
}

func (p *Publisher) respondOCSP(ctx context.Context, der []byte) (OCSPAnswer, error) {
	req, err := parseOCSPRequest(der)
	if err == nil && len(req.Entries) > MaxOCSPEntries {
		err = tacerr.New(tacerr.InvalidInput, "%d entries, at most %d per request", len(req.Entries), MaxOCSPEntries)
	}
	if err != nil {
		return OCSPAnswer{DER: MalformedOCSP}, tacerr.Field(tacerr.InvalidInput, "ocsp_request", "is not a DER OCSP request: %v", err)
	}
	var iss Issuer
	found := false
	for _, e := range req.Entries {
		for _, is := range p.Issuers() {
			if !is.Root && e.names(is.Cert) {
				iss, found = is, true
				break
			}
		}
		if found {
			break
		}
	}
	if !found {
		return OCSPAnswer{DER: UnauthorizedOCSP}, nil
	}
	resp, err := p.responder(ctx, iss)
	if err != nil {
		return OCSPAnswer{DER: InternalErrorOCSP}, err
	}
	now := p.now().UTC().Truncate(time.Second)
	next := now.Add(p.cfg.NextUpdate)
	out := make([]singleStatus, len(req.Entries))
	for i, e := range req.Entries {
		out[i] = singleStatus{ID: e, Status: ocsp.Unknown}
		if !e.names(iss.Cert) || e.Serial.Sign() <= 0 {
			continue
		}
		rec, err := p.db.CertificateBySerial(ctx, hex.EncodeToString(e.Serial.Bytes()))
		if err != nil {
			return OCSPAnswer{DER: InternalErrorOCSP}, err
		}
		switch {
		case rec == nil || rec.IssuerKeyID != iss.KeyID:
		case !rec.RevokedAt.IsZero():
			out[i].Status, out[i].RevokedAt, out[i].Reason = ocsp.Revoked, rec.RevokedAt.UTC().Truncate(time.Second), rec.RevokeReason.Code(false)
		default:
			out[i].Status = ocsp.Good
		}
	}
	body, err := encodeOCSPResponse(resp, now, now, next, out, req.NonceExt)
	if err != nil {
		return OCSPAnswer{DER: InternalErrorOCSP}, tacerr.Prefixed("sign the OCSP response of issuer "+iss.KeyID, err, tacerr.HSMDeviceError)
	}
	return OCSPAnswer{DER: body, ThisUpdate: now, NextUpdate: next, Nonce: req.NonceExt != nil}, nil
}
