package castore

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Development key labels.
const (
	RootLabel      = "tacline-root"
	IssuerLabel    = "tacline-device-ca-1"
	StationCALabel = "tacline-station-ca"
)

// DevCA is what the development ceremony made.
type DevCA struct {
	Root, Issuing, StationCA *x509.Certificate
	RootSigner               crypto.Signer
	StationSigner            crypto.Signer
}

// InitDev runs the development key ceremony: a root key, a device issuing CA
// key and a station CA key, all made in the HSM; a self-signed root; the two
// CA certificates signed by it; all three recorded in the ledger (the
// issuing and station CAs active). Production keeps the root offline: see
// `tacline ca init` without --dev.
func InitDev(ctx context.Context, db *store.DB, tok *hsm.Token, org, curve, actor string, now time.Time) (*DevCA, error) {
	keys := Keys{Token: tok}
	dev, err := ca.InitDev(ctx, Issuers{DB: db, Kind: store.IssuerDevice, Actor: actor}, keys,
		ca.CeremonyOptions{RootLabel: RootLabel, IssuerLabel: IssuerLabel, Curve: curve, Organization: org, Now: now})
	if err != nil {
		return nil, err
	}
	if err := db.AddIssuer(ctx, store.IssuerRecord{KeyID: ca.KeyID(dev.Root), Label: RootLabel, Kind: store.IssuerRoot,
		Curve: ca.CurveName(dev.Root.PublicKey), CertPEM: string(ca.ChainPEM(dev.Root)), Active: true}, actor); err != nil {
		return nil, err
	}
	stSigner, err := keys.GenerateKey(StationCALabel, curve)
	if err != nil {
		return nil, err
	}
	stCA, err := ca.StationCA(dev.Root, dev.RootSigner, stSigner.Public(),
		pkix.Name{Organization: []string{org}, CommonName: org + " Station CA"}, ca.ValidFor(now, 15*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	if err := db.AddIssuer(ctx, store.IssuerRecord{KeyID: ca.KeyID(stCA), Label: StationCALabel, Kind: store.IssuerStation,
		Curve: ca.CurveName(stCA.PublicKey), CertPEM: string(ca.ChainPEM(stCA)), ChainPEM: string(ca.ChainPEM(dev.Root)), Active: true}, actor); err != nil {
		return nil, err
	}
	return &DevCA{Root: dev.Root, Issuing: dev.Issuing, StationCA: stCA, RootSigner: dev.RootSigner, StationSigner: stSigner}, nil
}

// ActiveCA returns the active issuer of a kind with its certificate, chain
// and HSM signer.
func ActiveCA(ctx context.Context, db *store.DB, tok *hsm.Token, kind string) (*x509.Certificate, []*x509.Certificate, crypto.Signer, error) {
	r, err := db.ActiveIssuer(ctx, kind)
	if err != nil {
		return nil, nil, nil, err
	}
	certs, err := ca.ParseChainPEM([]byte(r.CertPEM))
	if err != nil {
		return nil, nil, nil, tacerr.Wrap(tacerr.Internal, err, "certificate of issuer %s", r.Label)
	}
	var chain []*x509.Certificate
	if r.ChainPEM != "" {
		if chain, err = ca.ParseChainPEM([]byte(r.ChainPEM)); err != nil {
			return nil, nil, nil, tacerr.Wrap(tacerr.Internal, err, "chain of issuer %s", r.Label)
		}
	}
	signer, err := tok.Signer(r.Label)
	if err != nil {
		return nil, nil, nil, err
	}
	return certs[0], chain, signer, nil
}

// PEM encodes one certificate.
func PEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
