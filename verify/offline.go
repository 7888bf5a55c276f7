package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/tacerr"
)

// OfflineRequest is an offline check (`tacline verify`) as raw inputs:
// no database, the trust anchors and CRLs come from files.
type OfflineRequest struct {
	Trust []byte   // PEM certificates: roots (anchors) and intermediates
	CRLs  [][]byte // DER or PEM CRLs, any number (none: revocation not checked)
	// TACs is the trusted manufacturers' TAC catalogue (the pipe-separated
	// file of `tacline tac export`); when given, an IMEI of any other TAC is
	// answered unknown. Empty: every TAC is accepted.
	TACs      []byte
	IMEI      string
	Chain     []byte // PEM, device certificate first
	Nonce     string // hex
	Signature []byte // DER
	At        time.Time
}

// Offline runs an offline check. Malformed inputs are errors naming the
// field (trust, crl, imei, chain, nonce, signature).
func Offline(ctx context.Context, r OfflineRequest) (Result, error) {
	anchors, err := ParseTrustPEM(r.Trust)
	if err != nil {
		return Result{}, err
	}
	trust, err := NewTrust(anchors)
	if err != nil {
		return Result{}, err
	}
	if len(r.TACs) > 0 {
		list, err := catalog.Parse(bytes.NewReader(r.TACs))
		if err != nil {
			return Result{}, tacerr.Wrap(tacerr.InvalidInput, err, "tacs: not a TAC catalogue file (the output of `tacline tac export`)")
		}
		tacs := make([]uint32, len(list))
		for i, t := range list {
			tacs[i] = t.TAC
		}
		trust = trust.WithTACs(tacs)
	}
	var rev Revocation
	if len(r.CRLs) > 0 {
		crls := make([]*x509.RevocationList, len(r.CRLs))
		for i, data := range r.CRLs {
			if crls[i], err = ParseCRL(data); err != nil {
				if e, ok := tacerr.As(err); ok && len(r.CRLs) > 1 {
					e.Message = fmt.Sprintf("CRL %d: %s", i+1, e.Message)
				}
				return Result{}, err
			}
		}
		rev = NewCRLSet(crls)
	}
	m, err := ParseIMEI(r.IMEI)
	if err != nil {
		return Result{}, err
	}
	chain, err := ParseChainPEM(r.Chain)
	if err != nil {
		return Result{}, err
	}
	nonce, err := ParseNonce(r.Nonce)
	if err != nil {
		return Result{}, err
	}
	if len(r.Signature) == 0 || len(r.Signature) > MaxSignatureBytes {
		return Result{}, tacerr.Field(tacerr.InvalidInput, "signature", "has %d bytes; give the device's DER ECDSA signature (`tacline device respond -o SIG`)", len(r.Signature))
	}
	return Check(ctx, Input{IMEI: m, Chain: chain, Nonce: nonce, Signature: r.Signature, At: r.At}, trust, rev, nil)
}
