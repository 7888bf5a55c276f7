package store

import (
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// deviceClaim is one device serial claimed by a request (table
// device_claims): one live claim per serial, taken in the transaction that
// reserves the device's IMEIs (provision) or records its intent (bind), so
// that of two requests for one serial at two replicas the loser's
// transaction fails whole and reserves nothing.
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
	now := tx.Now().UnixMicro()
	w := tx.rows(sqlInsertClaimHead, "(?,?,?)", 3, "claim device serials")
	w.onDuplicate = func(err error) error {
		if len(claims) == 1 {
			return tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial",
				"device %q is already provisioned or being provisioned by another request; nothing was reserved (rework goes through reissue)", claims[0].serial)
		}
		return tacerr.Wrap(tacerr.Conflict, err, "claim device serials %s", serialsOf(claims))
	}
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

// sqlReleaseClaim finds the claim by its serial (the primary key), named by
// the request's intent; the claim is deleted only if that request holds it.
const sqlReleaseClaim = `DELETE FROM device_claims WHERE serial = (SELECT device_serial FROM issuances WHERE request_id = ?) AND request_id = ?`

// releaseClaim frees the serial claimed by an abandoned request, so the
// device can be provisioned again under a new request id.
func (tx *Tx) releaseClaim(requestID string) error {
	_, err := tx.exec(tx.rebind(sqlReleaseClaim), requestID, requestID)
	return translate(err, "release device claim")
}
