package store

import (
	"context"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// Issuer kinds.
const (
	IssuerDevice  = "device"  // signs device certificates
	IssuerStation = "station" // signs station client certificates
	IssuerRoot    = "root"    // the development root (production roots stay offline)
)

// IssuerRecord is a CA whose key lives in the HSM.
type IssuerRecord struct {
	KeyID     string // hex subjectKeyIdentifier
	Label     string // HSM key label
	Kind      string
	Curve     string
	CertPEM   string // empty until the certificate is imported
	ChainPEM  string // certificates above it
	Active    bool
	CreatedAt time.Time
}

type issuerRow struct {
	KeyID     string `db:"key_id"`
	Label     string `db:"label"`
	Kind      string `db:"kind"`
	Curve     string `db:"curve"`
	CertPEM   string `db:"cert_pem"`
	ChainPEM  string `db:"chain_pem"`
	Active    bool   `db:"active"`
	CreatedAt int64  `db:"created_at"`
}

// AddIssuer records an issuer (inactive unless r.Active; activating one
// deactivates the other issuer of its kind in the same transaction).
func (db *DB) AddIssuer(ctx context.Context, r IssuerRecord, actor string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		if r.Active {
			if _, err := tx.exec(tx.rebind(`UPDATE issuers SET active = ? WHERE kind = ?`), false, r.Kind); err != nil {
				return translate(err, "deactivate issuers")
			}
		}
		_, err := tx.exec(tx.rebind(`INSERT INTO issuers (key_id, label, kind, curve, cert_pem, chain_pem, active, created_at) VALUES (?,?,?,?,?,?,?,?)`),
			r.KeyID, r.Label, r.Kind, r.Curve, r.CertPEM, r.ChainPEM, r.Active, tx.Now().UnixMicro())
		if isDuplicate(err) {
			return tacerr.Field(tacerr.Conflict, "label", "an issuer with key id %s or label %q exists already", r.KeyID, r.Label)
		}
		if err != nil {
			return translate(err, "add issuer")
		}
		if r.Active {
			tx.Emit(Event{Type: EventIssuerActivated, Actor: actor, Attrs: map[string]string{"key_id": r.KeyID, "label": r.Label, "kind": r.Kind, "curve": r.Curve}})
		}
		return nil
	})
}

// SetIssuerCert installs the certificate of an issuer (after an offline root
// signed its CSR).
func (db *DB) SetIssuerCert(ctx context.Context, keyID, certPEM, chainPEM string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(tx.rebind(`UPDATE issuers SET cert_pem = ?, chain_pem = ? WHERE key_id = ?`), certPEM, chainPEM, keyID)
		if err != nil {
			return translate(err, "install issuer certificate")
		}
		return oneRow(res, "install certificate of issuer %s", keyID)
	})
}

// ActivateIssuer makes one issuer the active one of its kind.
func (db *DB) ActivateIssuer(ctx context.Context, keyID, actor string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		var r issuerRow
		if err := tx.get(&r, tx.rebind(`SELECT key_id, label, kind, curve, cert_pem, chain_pem, active, created_at FROM issuers WHERE key_id = ?`), keyID); err != nil {
			if noRows(err) {
				return tacerr.Field(tacerr.NotFound, "key_id", "no issuer with key id %s", keyID)
			}
			return translate(err, "look up issuer")
		}
		if r.CertPEM == "" {
			return tacerr.Field(tacerr.InvalidState, "key_id", "issuer %s has no certificate yet: import it with `tacline ca import`", keyID)
		}
		if _, err := tx.exec(tx.rebind(`UPDATE issuers SET active = ? WHERE kind = ?`), false, r.Kind); err != nil {
			return translate(err, "deactivate issuers")
		}
		if _, err := tx.exec(tx.rebind(`UPDATE issuers SET active = ? WHERE key_id = ?`), true, keyID); err != nil {
			return translate(err, "activate issuer")
		}
		tx.Emit(Event{Type: EventIssuerActivated, Actor: actor, Attrs: map[string]string{"key_id": r.KeyID, "label": r.Label, "kind": r.Kind, "curve": r.Curve}})
		return nil
	})
}

// Issuers lists every issuer, newest first.
func (db *DB) Issuers(ctx context.Context) ([]IssuerRecord, error) {
	var rows []issuerRow
	if err := db.r.SelectContext(ctx, &rows, `SELECT key_id, label, kind, curve, cert_pem, chain_pem, active, created_at FROM issuers ORDER BY created_at DESC, key_id`); err != nil {
		return nil, translate(err, "list issuers")
	}
	out := make([]IssuerRecord, len(rows))
	for i, r := range rows {
		out[i] = IssuerRecord{KeyID: r.KeyID, Label: r.Label, Kind: r.Kind, Curve: r.Curve, CertPEM: r.CertPEM, ChainPEM: r.ChainPEM,
			Active: r.Active, CreatedAt: micros(r.CreatedAt)}
	}
	return out, nil
}

// ActiveIssuer returns the active issuer of a kind, or not_found.
func (db *DB) ActiveIssuer(ctx context.Context, kind string) (IssuerRecord, error) {
	all, err := db.Issuers(ctx)
	if err != nil {
		return IssuerRecord{}, err
	}
	for _, r := range all {
		if r.Kind == kind && r.Active {
			return r, nil
		}
	}
	return IssuerRecord{}, tacerr.New(tacerr.NotFound, "no active %s issuer: run `tacline ca init`", kind)
}
