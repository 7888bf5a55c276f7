package register

import (
	"context"
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

// Deliveries lists the outbox events of m, oldest first (acknowledged
// events deleted by retention are no longer listed).
func Deliveries(ctx context.Context, db *store.DB, m imei.IMEI) ([]Delivery, error) {
	got, err := db.OutboxDeliveries(ctx, m.Uint64())
	if err != nil {
		return nil, store.Translate(err, "read the register deliveries of "+m.String())
	}
	var out []Delivery
	for _, d := range got {
		out = append(out, Delivery{Event: d.Event, State: d.State, Attempts: d.Attempts, ReceiptID: d.ReceiptID, Reason: d.Reason,
			CloneAlert: d.CloneAlert, LastError: d.LastError, CreatedAt: d.CreatedAt, DoneAt: d.DoneAt})
	}
	return out, nil
}
