package castore

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"slices"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Development key labels.
const (
	RootLabel      = "tacline-root" // the device root
	IssuerLabel    = "tacline-device-ca-1"
	InfraRootLabel = "tacline-infra-root"
	StationCALabel = "tacline-station-ca"
)

// DevCA is what the development ceremony made: two hierarchies.
// Root -> Issuing signs device certificates; InfraRoot -> StationCA signs
// station, role and TLS server certificates. Trusting one root never
// accepts a certificate of the other.
type DevCA struct {
	Root, Issuing        *x509.Certificate
	InfraRoot, StationCA *x509.Certificate
	RootSigner           crypto.Signer
	StationSigner        crypto.Signer
}

// InitDev runs the development key ceremony: a device root key and a
// device issuing CA key, an infrastructure root key and a station CA key,
// all made in the HSM; the two self-signed roots; the issuing CA
// certificate signed by the device root (both until 99991231235959Z, so
// they outlive every device certificate, IEEE 802.1AR), the station CA
// certificate by the infrastructure root; all four recorded in the ledger
// (the issuing and station CAs active). deviceNotAfter is the device
// profile's fixed notAfter (zero: a duration), which the issuing CA must
// cover. Production keeps the roots offline: see `tacline ca init`
// without --dev.
//
// It decides before it spends: a ledger that holds a CA of the ceremony's
// kinds already, or a token that holds a key under one of its labels, is
// refused (conflict) before any key is made or anything recorded, so a
// ceremony run twice, or on a new token against an old ledger, leaves no
// half-made hierarchy.
func InitDev(ctx context.Context, db *store.DB, tok *hsm.Token, org, curve, actor string, now, deviceNotAfter time.Time) (*DevCA, error) {
	if err := checkFresh(ctx, db, tok, "ca init --dev", []string{store.IssuerDevice, store.IssuerRoot, store.IssuerInfraRoot, store.IssuerStation},
		[]string{RootLabel, IssuerLabel, InfraRootLabel, StationCALabel}); err != nil {
		return nil, err
	}
	keys := Keys{Token: tok}
	dev, err := ca.InitDev(ctx, Issuers{DB: db, Kind: store.IssuerDevice, Actor: actor}, keys,
		ca.CeremonyOptions{RootLabel: RootLabel, IssuerLabel: IssuerLabel, Curve: curve, Organization: org, Now: now, DeviceNotAfter: deviceNotAfter})
	if err != nil {
		return nil, err
	}
	if err := addRoot(ctx, db, RootLabel, store.IssuerRoot, dev.Root, actor); err != nil {
		return nil, err
	}
	infra, err := initInfra(ctx, db, tok, org, curve, actor, now)
	if err != nil {
		return nil, err
	}
	infra.Root, infra.Issuing, infra.RootSigner = dev.Root, dev.Issuing, dev.RootSigner
	return infra, nil
}

// checkFresh refuses a ceremony (cmd, as an operator runs it) whose CAs
// the ledger holds already (a kind in kinds) or whose key labels the token
// holds already.
func checkFresh(ctx context.Context, db *store.DB, tok *hsm.Token, cmd string, kinds, labels []string) error {
	recs, err := db.Issuers(ctx)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if slices.Contains(kinds, r.Kind) {
			return tacerr.Field(tacerr.Conflict, "ledger", "`tacline %s` runs once per ledger, and this ledger has a %s CA already (%s, key id %s): to change the device issuer use `tacline ca rotate --dev`; to start over, use a new ledger and token",
				cmd, r.Kind, r.Label, r.KeyID)
		}
	}
	keys, err := tok.Keys()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if slices.Contains(labels, k.Label) {
			return tacerr.Field(tacerr.Conflict, "label", "the HSM token holds a key labelled %q already (an interrupted ceremony?), which `tacline %s` would make: nothing was made; start over on a new token (`tacline hsm init-dev`) or delete that key with the token's own tool",
				k.Label, cmd)
		}
	}
	return nil
}

// InitInfra runs the infrastructure half of the development ceremony: an
// infrastructure root key and a station CA key made in the HSM, the
// self-signed root and the station CA certificate it signs, both recorded
// in the ledger (the station CA active). It fills InfraRoot, StationCA and
// StationSigner. A factory site of the sites demo runs it alone: its
// device issuing CA is certified by headquarters' device root instead
// (CertifySiteCA).
// Like InitDev, it is refused before any key is made when the ledger has
// an infrastructure root or station CA, or the token a key under its
// labels.
func InitInfra(ctx context.Context, db *store.DB, tok *hsm.Token, org, curve, actor string, now time.Time) (*DevCA, error) {
	if err := checkFresh(ctx, db, tok, "ca init --infra", []string{store.IssuerInfraRoot, store.IssuerStation}, []string{InfraRootLabel, StationCALabel}); err != nil {
		return nil, err
	}
	return initInfra(ctx, db, tok, org, curve, actor, now)
}

func initInfra(ctx context.Context, db *store.DB, tok *hsm.Token, org, curve, actor string, now time.Time) (*DevCA, error) {
	keys := Keys{Token: tok}
	infraSigner, err := keys.GenerateKey(InfraRootLabel, curve)
	if err != nil {
		return nil, err
	}
	infra, err := ca.SelfSignedRoot(infraSigner, pkix.Name{Organization: []string{org}, CommonName: org + " Infrastructure Root CA"},
		ca.ValidFor(now, 25*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	if err := addRoot(ctx, db, InfraRootLabel, store.IssuerInfraRoot, infra, actor); err != nil {
		return nil, err
	}
	stSigner, err := keys.GenerateKey(StationCALabel, curve)
	if err != nil {
		return nil, err
	}
	stCA, err := ca.StationCA(infra, infraSigner, stSigner.Public(),
		pkix.Name{Organization: []string{org}, CommonName: org + " Station CA"}, ca.ValidFor(now, 15*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	if err := db.AddIssuer(ctx, store.IssuerRecord{KeyID: ca.KeyID(stCA), Label: StationCALabel, Kind: store.IssuerStation,
		Curve: ca.CurveName(stCA.PublicKey), CertPEM: string(ca.ChainPEM(stCA)), ChainPEM: string(ca.ChainPEM(infra)), Active: true}, actor); err != nil {
		return nil, err
	}
	return &DevCA{InfraRoot: infra, StationCA: stCA, StationSigner: stSigner}, nil
}

// CertifySiteCA is headquarters' half of a factory site's CA ceremony
// (`tacline ca certify --csr`): the active device root of this ledger,
// its key in tok, certifies the issuing CA key behind csrPEM
// (ca.CertifyCSR), and the certification is recorded as one ca.certified
// event. It returns the certificate and the root that signed it. Errors:
// not_found (no device root here: HQ runs `tacline ca init --dev`, or holds
// its root offline), invalid_input (csr).
func CertifySiteCA(ctx context.Context, db *store.DB, tok *hsm.Token, csrPEM []byte, now, deviceNotAfter time.Time, actor string) (cert, root *x509.Certificate, err error) {
	root, _, signer, err := ActiveCA(ctx, db, tok, store.IssuerRoot)
	if err != nil {
		return nil, nil, err
	}
	if cert, err = ca.CertifyCSR(root, signer, csrPEM, now, deviceNotAfter); err != nil {
		return nil, nil, err
	}
	if err := db.RecordCACertified(ctx, ca.KeyID(cert), cert.SerialNumber.Text(16), cert.Subject.String(), ca.KeyID(root), actor); err != nil {
		return nil, nil, err
	}
	return cert, root, nil
}

func addRoot(ctx context.Context, db *store.DB, label, kind string, root *x509.Certificate, actor string) error {
	return db.AddIssuer(ctx, store.IssuerRecord{KeyID: ca.KeyID(root), Label: label, Kind: kind,
		Curve: ca.CurveName(root.PublicKey), CertPEM: string(ca.ChainPEM(root)), Active: true}, actor)
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
