package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// Authenticity checks: challenge nonces (single use, shared by replicas
// through the ledger) and the CRLs of the device issuers.

const (
	sqlInsertChallenge = `INSERT INTO challenges (nonce, client, created_at, expires_at) VALUES (?, ?, ?, ?)`
	// sqlUseChallenge consumes a nonce: only an unused, unexpired one
	// changes (RowsAffected 1).
	sqlUseChallenge    = `UPDATE challenges SET used_at = ? WHERE nonce = ? AND used_at IS NULL AND expires_at > ?`
	sqlChallengeState  = `SELECT expires_at, used_at FROM challenges WHERE nonce = ?`
	sqlPurgeChallenges = `DELETE FROM challenges WHERE expires_at < ?`

	sqlNextCRLNumber = `INSERT INTO crls (issuer_key_id, number) VALUES (?, 1)
		ON CONFLICT (issuer_key_id) DO UPDATE SET number = crls.number + 1 RETURNING number`
	sqlSaveCRL = `UPDATE crls SET published = ?, revoked = ?, this_update = ?, next_update = ?, der = ?
		WHERE issuer_key_id = ? AND published < ? AND number >= ?`
	sqlLatestCRL = `SELECT issuer_key_id, published, revoked, this_update, next_update, der FROM crls
		WHERE issuer_key_id = ? AND published > 0`
	sqlRevocationMarks = `SELECT issuer_key_id, COUNT(*) AS n, MAX(revoked_at) AS last FROM certificates
		WHERE revoked_at IS NOT NULL GROUP BY issuer_key_id`
)

// InsertChallenge records a fresh challenge nonce that expires at expires.
func (db *DB) InsertChallenge(ctx context.Context, nonce []byte, client string, expires time.Time) error {
	return db.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(tx.rebind(sqlInsertChallenge), nonce, client, tx.Now().UnixMicro(), expires.UnixMicro())
		if isDuplicate(err) {
			return tacerr.New(tacerr.Conflict, "challenge nonce collision; ask for another challenge")
		}
		return translate(err, "record challenge")
	})
}

// UseChallenge consumes a challenge nonce once. An unknown or expired
// nonce is invalid_input (field nonce), a nonce used before is conflict
// (a replay); both say to ask for a fresh challenge.
func (db *DB) UseChallenge(ctx context.Context, nonce []byte) error {
	return db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now().UnixMicro()
		res, err := tx.exec(tx.rebind(sqlUseChallenge), now, nonce, now)
		if err != nil {
			return translate(err, "use challenge")
		}
		if n, err := res.RowsAffected(); err != nil {
			return translate(err, "use challenge")
		} else if n == 1 {
			return nil
		}
		var st struct {
			Expires int64         `db:"expires_at"`
			Used    sql.NullInt64 `db:"used_at"`
		}
		err = tx.get(&st, tx.rebind(sqlChallengeState), nonce)
		switch {
		case noRows(err):
			return tacerr.Field(tacerr.InvalidInput, "nonce", "is not a challenge this service issued (or it was purged after expiry): ask POST /v1/challenges for a fresh one")
		case err != nil:
			return translate(err, "look up challenge")
		case st.Used.Valid:
			return tacerr.Field(tacerr.Conflict, "nonce", "was already used at %s: a challenge answers one check only (replay refused); ask for a fresh one", micros(st.Used.Int64).Format(time.RFC3339))
		}
		return tacerr.Field(tacerr.InvalidInput, "nonce", "expired at %s: ask POST /v1/challenges for a fresh one and answer it promptly", micros(st.Expires).Format(time.RFC3339))
	})
}

// PurgeChallenges deletes challenges that expired before cutoff and returns
// how many.
func (db *DB) PurgeChallenges(ctx context.Context, cutoff time.Time) (int64, error) {
	var n int64
	err := db.InTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(tx.rebind(sqlPurgeChallenges), cutoff.UnixMicro())
		if err != nil {
			return translate(err, "purge challenges")
		}
		n, err = res.RowsAffected()
		return translate(err, "purge challenges")
	})
	return n, err
}

// NextCRLNumber hands out the next CRL number of an issuer (1, 2, ...):
// numbers only grow, across replicas.
func (db *DB) NextCRLNumber(ctx context.Context, issuerKeyID string) (int64, error) {
	var n int64
	err := db.InTx(ctx, func(tx *Tx) error {
		return translate(tx.get(&n, tx.rebind(sqlNextCRLNumber), issuerKeyID), "allocate CRL number")
	})
	return n, err
}

// CRLRecord is a published CRL.
type CRLRecord struct {
	IssuerKeyID string `db:"issuer_key_id"`
	Number      int64  `db:"published"`
	Revoked     int64  `db:"revoked"` // entries
	ThisUpdate  int64  `db:"this_update"`
	NextUpdate  int64  `db:"next_update"`
	DER         []byte `db:"der"`
}

// ThisUpdateTime is ThisUpdate as a time.
func (r *CRLRecord) ThisUpdateTime() time.Time { return micros(r.ThisUpdate) }

// NextUpdateTime is NextUpdate as a time.
func (r *CRLRecord) NextUpdateTime() time.Time { return micros(r.NextUpdate) }

// SaveCRL publishes a CRL whose number came from NextCRLNumber. It reports
// false, without error, when a CRL with a higher number was published
// meanwhile (by another replica): the newer one stays.
func (db *DB) SaveCRL(ctx context.Context, r CRLRecord) (bool, error) {
	saved := false
	err := db.InTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(tx.rebind(sqlSaveCRL), r.Number, r.Revoked, r.ThisUpdate, r.NextUpdate, r.DER, r.IssuerKeyID, r.Number, r.Number)
		if err != nil {
			return translate(err, "publish CRL")
		}
		n, err := res.RowsAffected()
		saved = n == 1
		return translate(err, "publish CRL")
	})
	return saved, err
}

// LatestCRL returns the latest published CRL of an issuer, or nil.
func (db *DB) LatestCRL(ctx context.Context, issuerKeyID string) (*CRLRecord, error) {
	var r CRLRecord
	err := db.r.GetContext(ctx, &r, db.r.Rebind(sqlLatestCRL), issuerKeyID)
	if noRows(err) {
		return nil, nil
	}
	if err != nil {
		return nil, translate(err, "look up CRL")
	}
	return &r, nil
}

// RevocationMark summarises an issuer's revocations: a CRL is stale when
// the mark changed since it was made.
type RevocationMark struct {
	Count int64
	Last  time.Time
}

// RevocationMarks returns the mark of every issuer with revoked
// certificates.
func (db *DB) RevocationMarks(ctx context.Context) (map[string]RevocationMark, error) {
	var rows []struct {
		Issuer string `db:"issuer_key_id"`
		N      int64  `db:"n"`
		Last   int64  `db:"last"`
	}
	if err := db.r.SelectContext(ctx, &rows, db.r.Rebind(sqlRevocationMarks)); err != nil {
		return nil, translate(err, "summarise revocations")
	}
	out := make(map[string]RevocationMark, len(rows))
	for _, r := range rows {
		out[r.Issuer] = RevocationMark{Count: r.N, Last: micros(r.Last)}
	}
	return out, nil
}
