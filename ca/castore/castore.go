// Package castore connects the key ceremony (package ca) to tacline's real
// components: issuers are kept in the ledger database (so every replica sees
// the same active issuer) and keys are made in the HSM.
package castore

import (
	"context"
	"crypto"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Issuers is a ca.IssuerStore over the ledger for one kind of issuer
// (store.IssuerDevice or store.IssuerStation).
type Issuers struct {
	DB    *store.DB
	Kind  string
	Actor string
}

var _ ca.IssuerStore = Issuers{}

// AddIssuer implements ca.IssuerStore.
func (s Issuers) AddIssuer(ctx context.Context, r ca.IssuerRecord) error {
	return s.DB.AddIssuer(ctx, store.IssuerRecord{KeyID: r.KeyID, Label: r.Label, Kind: s.Kind, Curve: r.Curve,
		CertPEM: r.CertPEM, ChainPEM: r.ChainPEM, Active: r.Active}, s.Actor)
}

// ListIssuers implements ca.IssuerStore.
func (s Issuers) ListIssuers(ctx context.Context) ([]ca.IssuerRecord, error) {
	all, err := s.DB.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	var out []ca.IssuerRecord
	for _, r := range all {
		if r.Kind != s.Kind {
			continue
		}
		out = append(out, ca.IssuerRecord{Label: r.Label, KeyID: r.KeyID, Curve: r.Curve, CertPEM: r.CertPEM,
			ChainPEM: r.ChainPEM, Active: r.Active, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

// LabelInUse implements ca.IssuerStore: labels are unique across every
// kind of issuer in the ledger.
func (s Issuers) LabelInUse(ctx context.Context, label string) (string, error) {
	all, err := s.DB.Issuers(ctx)
	if err != nil {
		return "", err
	}
	for _, r := range all {
		if r.Label == label {
			return r.KeyID, nil
		}
	}
	return "", nil
}

// Activate implements ca.IssuerStore.
func (s Issuers) Activate(ctx context.Context, keyID string) error {
	return s.DB.ActivateIssuer(ctx, keyID, s.Actor)
}

// Keys is a ca.KeyGenerator over an HSM token.
type Keys struct{ Token *hsm.Token }

var _ ca.KeyGenerator = Keys{}

// GenerateKey implements ca.KeyGenerator: a non-extractable key pair made in
// the token, returned as its cached signer.
func (k Keys) GenerateKey(label, curve string) (crypto.Signer, error) {
	var kt hsm.KeyType
	switch curve {
	case "", "P-256":
		kt = hsm.ECP256
	case "P-384":
		kt = hsm.ECP384
	default:
		return nil, tacerr.Field(tacerr.InvalidInput, "curve", "%q is not supported for CA keys: use P-256 or P-384", curve)
	}
	if _, err := k.Token.GenerateKey(label, kt); err != nil {
		return nil, err
	}
	return k.Token.Signer(label)
}

// Signer returns the cached signer of the key pair labelled label.
func (k Keys) Signer(label string) (crypto.Signer, error) { return k.Token.Signer(label) }

// DeleteKey destroys the key pair labelled label (hsm.Token.DeleteKey).
func (k Keys) DeleteKey(label string) error { return k.Token.DeleteKey(label) }
