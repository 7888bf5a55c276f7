package store

import (
	"context"
	"time"

	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/tacerr"
)

// Issuer kinds.
const (
	IssuerDevice  = "device"  // signs device certificates
	IssuerStation = "station" // signs station client certificates
	IssuerRoot    = "root"    // the device root (development: its key is in the HSM; production roots stay offline)
	// IssuerInfraRoot anchors infrastructure identities (the station CA:
	// stations, roles, the TLS server), apart from the device root, so
	// trusting one never accepts the other.
	IssuerInfraRoot = "infra_root"
	// IssuerOCSP is a delegated OCSP responder certificate of a device
	// issuer (its chain_pem), made and renewed by the running server.
	IssuerOCSP = "ocsp"
)

// IsRootKind reports whether kind is a self-signed root.
func IsRootKind(kind string) bool { return kind == IssuerRoot || kind == IssuerInfraRoot }

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
	// RevokedAt is when the CA was revoked (`tacline ca revoke`), zero if
	// it is not; RevokeReason is the tacline reason.
	RevokedAt    time.Time
	RevokeReason lifecycle.RevokeReason
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
	RevokedAt *int64 `db:"revoked_at"`
	Reason    string `db:"revoke_reason"`
}

const sqlSelectIssuers = `SELECT key_id, label, kind, curve, cert_pem, chain_pem, active, created_at, revoked_at, revoke_reason FROM issuers`

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

// RecordCACertified records, as one ca.certified event (audited), that
// the root rootKeyID certified another deployment's issuing CA keyID
// (serial hex, subject): the CA itself is not an issuer of this ledger.
func (db *DB) RecordCACertified(ctx context.Context, keyID, serial, subject, rootKeyID, actor string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		tx.Emit(Event{Type: EventCACertified, Actor: actor, Attrs: map[string]string{"key_id": keyID, "serial": serial,
			"subject": subject, "root_key_id": rootKeyID}})
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
		if err := tx.get(&r, tx.rebind(sqlSelectIssuers+` WHERE key_id = ?`), keyID); err != nil {
			if noRows(err) {
				return tacerr.Field(tacerr.NotFound, "key_id", "no issuer with key id %s", keyID)
			}
			return translate(err, "look up issuer")
		}
		if r.RevokedAt != nil {
			return tacerr.Field(tacerr.InvalidState, "key_id", "issuer %s is revoked and can never be active again", keyID)
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
	if err := db.r.SelectContext(ctx, &rows, sqlSelectIssuers+` ORDER BY created_at DESC, key_id`); err != nil {
		return nil, translate(err, "list issuers")
	}
	out := make([]IssuerRecord, len(rows))
	for i, r := range rows {
		out[i] = r.record()
	}
	return out, nil
}

func (r issuerRow) record() IssuerRecord {
	out := IssuerRecord{KeyID: r.KeyID, Label: r.Label, Kind: r.Kind, Curve: r.Curve, CertPEM: r.CertPEM, ChainPEM: r.ChainPEM,
		Active: r.Active, CreatedAt: micros(r.CreatedAt), RevokeReason: lifecycle.RevokeReason(r.Reason)}
	if r.RevokedAt != nil {
		out.RevokedAt = micros(*r.RevokedAt)
	}
	return out
}

// RevokeIssuer records the revocation of a CA below a root (a device
// issuing CA or the station CA): its root's CRL lists it from then on.
// The active issuer of its kind cannot be revoked (activate another one
// first), nor a root or an OCSP responder; a second revocation is a
// conflict. One issuer.revoked event.
func (db *DB) RevokeIssuer(ctx context.Context, keyID string, reason lifecycle.RevokeReason, actor string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		var r issuerRow
		if err := tx.get(&r, tx.rebind(sqlSelectIssuers+` WHERE key_id = ?`), keyID); err != nil {
			if noRows(err) {
				return tacerr.Field(tacerr.NotFound, "key_id", "no issuer with key id %s: see `tacline ca list`", keyID)
			}
			return translate(err, "look up issuer")
		}
		switch {
		case r.Kind != IssuerDevice && r.Kind != IssuerStation:
			return tacerr.Field(tacerr.InvalidInput, "key_id", "issuer %s is a %s; only device issuing CAs and station CAs are revoked here (a root's own CRL cannot revoke it)", keyID, r.Kind)
		case r.RevokedAt != nil:
			return tacerr.Field(tacerr.Conflict, "key_id", "issuer %s was revoked already", keyID)
		case r.Active:
			return tacerr.Field(tacerr.InvalidState, "key_id", "issuer %s is the active %s issuer: activate another one first (`tacline ca rotate`)", keyID, r.Kind)
		}
		now := tx.Now()
		res, err := tx.exec(tx.rebind(`UPDATE issuers SET revoked_at = ?, revoke_reason = ? WHERE key_id = ? AND revoked_at IS NULL`), now.UnixMicro(), string(reason), keyID)
		if err != nil {
			return translate(err, "revoke issuer")
		}
		if err := oneRow(res, "revoke issuer %s", keyID); err != nil {
			return err
		}
		tx.Emit(Event{Type: EventIssuerRevoked, Actor: actor, Reason: string(reason), Attrs: map[string]string{"key_id": r.KeyID, "label": r.Label, "kind": r.Kind}})
		return nil
	})
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
