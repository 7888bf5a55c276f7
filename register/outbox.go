package register

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Outbox is the store.Sink that turns ledger events into outbox rows.
// Register it once at start-up: db.AddSink(register.Outbox{}).
type Outbox struct{}

var _ store.Sink = Outbox{}

const (
	sqlTACNames     = `SELECT brand, model_name FROM tacs WHERE tac = ?`
	sqlInsertOutbox = `INSERT INTO register_outbox
    (idempotency_key, imei14, tac, event, device_id, model, brand, occurred_at, next_attempt_at, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// registerEvent maps a ledger event type to the register's event, or "".
func registerEvent(t string) string {
	switch t {
	case store.EventIMEIBound:
		return wire.EventRegistered
	case store.EventIMEIVoided:
		return wire.EventVoided
	case store.EventIMEIRevoked:
		return wire.EventRevoked
	case store.EventDeviceReissued:
		return wire.EventUpdated
	}
	return ""
}

// Append implements store.Sink: one row per IMEI of each reportable event,
// with brand and model read from the tacs table through tx.
func (Outbox) Append(tx *store.Tx, events []store.Event) error {
	type names struct{ brand, model string }
	cache := map[uint32]names{}
	now := tx.Now().UnixMicro()
	for _, ev := range events {
		event := registerEvent(ev.Type)
		if event == "" {
			continue
		}
		for _, s := range ev.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				return tacerr.Wrap(tacerr.Internal, err, "register outbox: event %s carries IMEI %q", ev.Type, s)
			}
			n, ok := cache[m.TAC()]
			if !ok {
				err := tx.QueryRow(tx.Rebind(sqlTACNames), m.TAC()).Scan(&n.brand, &n.model)
				if errors.Is(err, sql.ErrNoRows) {
					return tacerr.New(tacerr.TACUnknown, "register outbox: TAC %s of IMEI %s is not in the catalogue", m.TACString(), m)
				}
				if err != nil {
					return tacerr.Wrap(tacerr.Unavailable, err, "register outbox: read TAC %s", m.TACString())
				}
				cache[m.TAC()] = n
			}
			device := wire.DeviceID(ev.DeviceSerial, "IMEI"+m.Digits14())
			res, err := tx.Exec(tx.Rebind(sqlInsertOutbox), newKey(), m.Uint64(), m.TAC(), event, device,
				n.model, n.brand, ev.Time.UnixMicro(), now, now)
			if err != nil {
				return tacerr.Wrap(tacerr.Unavailable, err, "register outbox: insert %s of %s", event, m)
			}
			if k, err := res.RowsAffected(); err != nil || k != 1 {
				return tacerr.New(tacerr.Internal, "register outbox: insert %s of %s touched %d rows (%v)", event, m, k, err)
			}
		}
	}
	return nil
}

// newKey returns a fresh idempotency key: 128 random bits.
func newKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "tl-" + hex.EncodeToString(b[:])
}
