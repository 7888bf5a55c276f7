package castore

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// StationSpec describes a station to enroll.
type StationSpec struct {
	ID      string
	Factory string
	Line    string
	Pools   []string
	Product string // written to the credentials for the line simulator
	Roles   []string
	Person  string // with Roles and no ID: the person the certificate is for
}

// Credentials layout (what `tacline station simulate --creds DIR` reads):
//
//	DIR/<station-id>/cert.pem   the station's client certificate (and the station CA)
//	DIR/<station-id>/key.pem    its private key (PKCS#8, 0600)
//	DIR/<station-id>/product    the product it provisions
//	DIR/ca-chain.pem            device issuing CA + root: verifies device certificates
//	DIR/server-ca.pem           verifies the server's TLS certificate
const (
	CertFile     = "cert.pem"
	KeyFile      = "key.pem"
	ProductFile  = "product"
	ChainFile    = "ca-chain.pem"
	ServerCAFile = "server-ca.pem"
)

// EnrollStation issues a station client certificate from the station CA key
// in the HSM, records the station in the ledger and writes its credentials
// under credsDir/<id>. Re-enrolling a station issues a new certificate and
// enables it again.
func EnrollStation(ctx context.Context, db *store.DB, tok *hsm.Token, s StationSpec, credsDir, actor string) (*x509.Certificate, error) {
	caCert, _, caSigner, err := ActiveCA(ctx, db, tok, store.IssuerStation)
	if err != nil {
		return nil, err
	}
	roles := s.Roles
	if s.ID == "" && len(roles) == 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "id", "a station id or a role is required")
	}
	if s.ID == "" && s.Person == "" {
		// the certificate's name is the actor the ledger and the audit
		// log record: one per person, never one shared by a role
		return nil, tacerr.Field(tacerr.InvalidInput, "person", "a role certificate is for one person: name them (e.g. --person j.doe), so the audit log tells who acted")
	}
	cert, key, err := ca.StationCert(caCert, caSigner, nil, ca.Station{ID: s.ID, Factory: s.Factory, Line: s.Line, Roles: roles, Person: s.Person},
		ca.ValidFor(time.Now(), 2*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	name := s.ID
	if name == "" {
		name = "person-" + s.Person
	}
	dir := filepath.Join(credsDir, name)
	if err := WriteKeyPair(dir, append(PEM(cert), PEM(caCert)...), key); err != nil {
		return nil, err
	}
	if s.Product != "" {
		if err := os.WriteFile(filepath.Join(dir, ProductFile), []byte(s.Product+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if s.ID != "" {
		if err := db.EnrollStation(ctx, store.StationRecord{ID: s.ID, Factory: s.Factory, Line: s.Line, Pools: s.Pools,
			CertSerial: cert.SerialNumber.Text(16)}, actor); err != nil {
			return nil, err
		}
	} else if err := db.EnrollPerson(ctx, store.PersonCert{CertSerial: cert.SerialNumber.Text(16), Person: s.Person, Roles: roles}, actor); err != nil {
		return nil, err
	}
	return cert, nil
}

// WriteKeyPair writes cert.pem and key.pem (0600) into dir.
func WriteKeyPair(dir string, certPEM []byte, key crypto.Signer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, CertFile), certPEM, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, KeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
