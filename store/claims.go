package store

import (
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// deviceClaim is one device serial claimed by a request (table
// device_claims): one live claim per serial, taken in the transaction that
// reserves the device's IMEIs (provision) or records its intent (bind), so
// that of two requests for one serial at two replicas the loser's
// transaction fails whole and reserves nothing. On SQLite
// (claimsUntilBound) the claim is deleted when the device is recorded
// (settleClaims) and a serial with a devices row cannot be claimed: the
// devices row holds the serial from then on, as the claim would have.
type deviceClaim struct {
	serial, requestID string
}

const sqlInsertClaimHead = `INSERT INTO device_claims (serial, request_id, claimed_at) VALUES `

// claimDevices records claims with one statement. A serial already claimed
// is device_already_provisioned when there is one claim (the statement-by-
// statement rerun names it), conflict otherwise (the batch fails and its
// members are rerun alone).
func (tx *Tx) claimDevices(claims []deviceClaim) error {
	if len(claims) == 0 {
		return nil
	}
	taken := func(err error) error {
		if len(claims) == 1 {
			return tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial",
				"device %q is already provisioned or being provisioned by another request; nothing was reserved (rework goes through reissue)", claims[0].serial)
		}
		return tacerr.Wrap(tacerr.Conflict, err, "claim device serials %s", serialsOf(claims))
	}
	if tx.db.sql.claimsUntilBound {
		// A recorded device holds its serial instead of a claim.
		serials := make([]string, len(claims))
		for i, c := range claims {
			serials[i] = c.serial
		}
		q, args, err := tx.in(sqlRecordedDevices, serials)
		if err != nil {
			return err
		}
		var recorded []string
		if err := tx.sel(&recorded, q, args...); err != nil {
			return translate(err, "look up recorded devices")
		}
		if len(recorded) > 0 {
			return taken(tacerr.New(tacerr.Conflict, "device %s is recorded", recorded[0]))
		}
	}
	now := tx.Now().UnixMicro()
	w := tx.rows(sqlInsertClaimHead, "(?,?,?)", 3, "claim device serials").sized(len(claims))
	w.onDuplicate = taken
	for _, c := range claims {
		if err := w.add(c.serial, c.requestID, now); err != nil {
			return err
		}
	}
	return w.flush()
}

func serialsOf(claims []deviceClaim) string {
	s := make([]string, len(claims))
	for i, c := range claims {
		s[i] = c.serial
	}
	return strings.Join(s, ",")
}

const sqlRecordedDevices = `SELECT serial FROM devices WHERE serial IN (?)`

// sqlSettleClaims deletes the claims of n (serial, request id) pairs, each
// found through the claims' primary key.
func sqlSettleClaims(n int) string {
	return multiRow(`DELETE FROM device_claims WHERE rowid IN (SELECT c.rowid FROM (VALUES `, "(?,?)", n) +
		`) AS v JOIN device_claims c ON c.serial = v.column1 AND c.request_id = v.column2)`
}

// settleClaims deletes, on SQLite (claimsUntilBound), the claims of
// devices just recorded in tx by the requests that hold them: the devices
// rows hold the serials from now on. A claim already gone (a ledger filled
// by the bulk loader, which writes none for bound devices) is no error.
func (tx *Tx) settleClaims(claims []deviceClaim) error {
	if !tx.db.sql.claimsUntilBound || len(claims) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(claims))
	for _, c := range claims {
		args = append(args, c.serial, c.requestID)
	}
	_, err := tx.exec(sqlSettleClaims(len(claims)), args...)
	return translate(err, "settle device claims")
}

// sqlReleaseClaim finds the claim by its serial (the primary key), named by
// the request's intent; the claim is deleted only if that request holds it.
const sqlReleaseClaim = `DELETE FROM device_claims WHERE serial = (SELECT device_serial FROM issuances WHERE request_id = ?) AND request_id = ?`

// releaseClaim frees the serial claimed by an abandoned request, so the
// device can be provisioned again under a new request id.
func (tx *Tx) releaseClaim(requestID string) error {
	_, err := tx.exec(tx.rebind(sqlReleaseClaim), requestID, requestID)
	return translate(err, "release device claim")
}

// keyClaim is a device key (by SPKI hash) claimed for a device by the
// request that reserves the device's IMEIs (provision) or records its
// intent (bind).
type keyClaim struct {
	spkiHash []byte
	serial   string
}

// claimKeys claims device keys in device_keys in the transaction that
// reserves (records) their devices' intents, so that of two requests with
// one key for two devices the loser's transaction fails whole and it
// reserves nothing: key_reused when there is one claim (the statement-by-
// statement rerun names it), conflict otherwise (the batch fails and its
// members are rerun alone). The binding meets its own claim (bindBatch).
func (tx *Tx) claimKeys(claims []keyClaim) error {
	if len(claims) == 0 {
		return nil
	}
	w := tx.rows(sqlInsertKeysHead, "(?,?)", 2, "claim device keys").sized(len(claims))
	w.onDuplicate = func(err error) error {
		if len(claims) == 1 {
			return tacerr.Field(tacerr.KeyReused, "csr",
				"this public key is already bound to another device, or claimed by another request in flight: a device key must be unique (key reuse is a cloning signal); nothing was reserved")
		}
		return tacerr.Wrap(tacerr.Conflict, err, "claim device keys")
	}
	for _, c := range claims {
		if err := w.add(c.spkiHash, c.serial); err != nil {
			return err
		}
	}
	return w.flush()
}

const sqlInsertKeysHead = `INSERT INTO device_keys (spki_hash, device_serial) VALUES `

// sqlReleaseKey deletes the key claimed by an abandoned provision or bind
// intent (found by its primary key, the SPKI hash), only if it is still
// claimed for the intent's device and that device was never recorded: a
// reissue intent claims nothing before its commit, and a recorded
// device's key stays its own.
const sqlReleaseKey = `DELETE FROM device_keys WHERE spki_hash = (SELECT spki_hash FROM issuances WHERE request_id = ? AND kind IN ('provision', 'bind'))
	AND device_serial = (SELECT device_serial FROM issuances WHERE request_id = ?)
	AND NOT EXISTS (SELECT 1 FROM devices WHERE serial = device_keys.device_serial)`

// releaseKey frees the device key claimed by an abandoned request, so that
// the key may certify the device (or, if it was not the device's, another)
// under a new request id.
func (tx *Tx) releaseKey(requestID string) error {
	_, err := tx.exec(tx.rebind(sqlReleaseKey), requestID, requestID)
	return translate(err, "release device key")
}
