package register

import (
	"context"
	"database/sql"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
)

// Delivery is one outbox event of an IMEI and how its delivery stands.
type Delivery struct {
	Event      string    `json:"event"` // registered | voided | revoked | updated
	State      string    `json:"state"` // pending | sent | acknowledged | rejected
	Attempts   int       `json:"attempts"`
	ReceiptID  string    `json:"receipt_id,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	CloneAlert bool      `json:"clone_alert"`
	LastError  string    `json:"last_error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	DoneAt     time.Time `json:"done_at,omitzero"`
}

const sqlIMEIDeliveries = `SELECT event, state, attempts, receipt_id, reason, clone_alert, last_error, created_at, done_at
FROM register_outbox WHERE imei14 = ? ORDER BY id`

// Deliveries lists the outbox events of m, oldest first (acknowledged
// events deleted by retention are no longer listed).
func Deliveries(ctx context.Context, db *store.DB, m imei.IMEI) ([]Delivery, error) {
	q := db.Reader()
	rows, err := q.QueryContext(ctx, q.Rebind(sqlIMEIDeliveries), int64(m.Uint64()))
	if err != nil {
		return nil, store.Translate(err, "read the register deliveries of "+m.String())
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var clone int
		var created int64
		var done sql.NullInt64
		if err := rows.Scan(&d.Event, &d.State, &d.Attempts, &d.ReceiptID, &d.Reason, &clone, &d.LastError, &created, &done); err != nil {
			return nil, store.Translate(err, "read the register deliveries of "+m.String())
		}
		d.CloneAlert, d.CreatedAt = clone == 1, time.UnixMicro(created).UTC()
		if done.Valid {
			d.DoneAt = time.UnixMicro(done.Int64).UTC()
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, store.Translate(err, "read the register deliveries of "+m.String())
	}
	return out, nil
}
