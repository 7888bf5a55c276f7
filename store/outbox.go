package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// The register outbox's tables (register_outbox, register_outbox_stats)
// are written and read here; package register decides what to report and
// talks to the register over these methods.

// OutboxRow is one event to report for one IMEI, appended in the ledger
// transaction that made the change.
type OutboxRow struct {
	Key        string // idempotency key, unique
	IMEI14     uint64
	TAC        uint32
	Event      string
	DeviceID   string
	Model      string
	Brand      string
	OccurredAt time.Time
}

// OutboxClaim is an outbox row claimed for delivery.
type OutboxClaim struct {
	ID       int64
	Key      string
	IMEI14   int64
	Event    string
	Device   string
	Model    string
	Brand    string
	Occurred int64 // Unix microseconds
	Attempts int   // including this one
}

// OutboxResult is the register's answer for one claimed row: acknowledged
// (Ack, with the register's receipt) or rejected (Reason, CloneAlert).
type OutboxResult struct {
	ID         int64
	Ack        bool
	ReceiptID  string
	Reason     string
	CloneAlert bool
}

// OutboxStats are the counters kept in register_outbox_stats.
type OutboxStats struct {
	Acknowledged  int64 // acknowledged rows in the outbox
	Pruned        int64 // acknowledged rows deleted by retention
	PrunedThrough int64 // the largest outbox id deleted (0: none)
}

const (
	sqlTACNames         = `SELECT tac, brand, model_name FROM tacs WHERE tac IN (?)`
	sqlInsertOutboxHead = `INSERT INTO register_outbox
    (idempotency_key, imei14, tac, event, device_id, model, brand, occurred_at, next_attempt_at, created_at)
VALUES `
	// sqlOutboxReady counts rows a worker could claim now, up to a batch
	// (so a large backlog costs no more than a full batch), and
	// sqlOutboxOldestReady reads the oldest one's age.
	sqlOutboxReady = `SELECT COUNT(*) FROM (SELECT 1 FROM register_outbox
WHERE state IN ('pending', 'sent') AND next_attempt_at <= ? AND claim_until <= ? LIMIT ?) r`
	sqlOutboxOldestReady = `SELECT created_at FROM register_outbox
WHERE state IN ('pending', 'sent') AND next_attempt_at <= ? AND claim_until <= ? ORDER BY id LIMIT 1`
	// sqlOutboxClaim claims up to N rows in id order: open, due, unclaimed
	// or with an expired claim, and with no earlier open row of the same
	// IMEI.
	sqlOutboxClaim = `UPDATE register_outbox
SET state = 'sent', claimed_by = ?, claim_until = ?, attempts = attempts + 1, sent_at = ?
WHERE id IN (SELECT o.id FROM register_outbox o
    WHERE o.state IN ('pending', 'sent') AND o.next_attempt_at <= ? AND o.claim_until <= ?
      AND NOT EXISTS (SELECT 1 FROM register_outbox p
                      WHERE p.imei14 = o.imei14 AND p.id < o.id AND p.state IN ('pending', 'sent'))
    ORDER BY o.id LIMIT ? %s)
RETURNING id, idempotency_key, imei14, event, device_id, model, brand, occurred_at, attempts`
	sqlOutboxAck = `UPDATE register_outbox SET state = 'acknowledged', receipt_id = ?, done_at = ?, claim_until = 0, last_error = ''
WHERE id = ? AND claimed_by = ? AND state = 'sent'`
	sqlOutboxReject = `UPDATE register_outbox SET state = 'rejected', reason = ?, clone_alert = ?, done_at = ?, claim_until = 0, last_error = ''
WHERE id = ? AND claimed_by = ? AND state = 'sent'`
	sqlOutboxRetry = `UPDATE register_outbox SET state = 'pending', claim_until = 0, next_attempt_at = ?, last_error = ?
WHERE id = ? AND claimed_by = ? AND state = 'sent'`
	sqlOutboxRequeue = `UPDATE register_outbox
SET state = 'pending', next_attempt_at = ?, attempts = 0, clone_alert = 0, last_error = 'requeued by ' || ? || ' after: ' || reason, reason = '', done_at = NULL
WHERE imei14 = ? AND state = 'rejected'`
	// sqlOutboxRequeueLater finds a rejected row of an IMEI with a later row
	// of the IMEI sent or acknowledged (both through register_outbox_imei).
	sqlOutboxRequeueLater = `SELECT r.event AS event, l.event AS later, l.state AS state
FROM register_outbox r JOIN register_outbox l ON l.imei14 = r.imei14 AND l.id > r.id
WHERE r.imei14 = ? AND r.state = 'rejected' AND l.state IN ('sent', 'acknowledged')
ORDER BY r.id, l.id LIMIT 1`
)

// TACName is a catalogue TAC's brand and model name.
type TACName struct{ Brand, Model string }

// knowTACName records a TAC's names read by another statement of tx, for
// TACNamesOf.
func (tx *Tx) knowTACName(tac uint32, n TACName) {
	if tx.tacNames == nil {
		tx.tacNames = map[uint32]TACName{}
	}
	tx.tacNames[tac] = n
}

// TACNamesOf returns the brand and model name of each of tacs found in the
// catalogue, as tx sees them, with one read for all of them (a transaction
// that reports the devices of many pools reads them once, not once per TAC;
// names another statement of tx read already are not read again).
func (tx *Tx) TACNamesOf(tacs []uint32) (map[uint32]TACName, error) {
	out := make(map[uint32]TACName, len(tacs))
	var keys []int64
	for _, t := range tacs {
		if n, ok := tx.tacNames[t]; ok {
			out[t] = n
		} else {
			keys = append(keys, int64(t))
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	q, args, err := tx.in(sqlTACNames, keys)
	if err != nil {
		return nil, err
	}
	rows, err := tx.queryx(q, args...)
	if err != nil {
		return nil, translate(err, "read the catalogue's TAC names")
	}
	defer rows.Close()
	for rows.Next() {
		var tac int64
		var n TACName
		if err := rows.Scan(&tac, &n.Brand, &n.Model); err != nil {
			return nil, translate(err, "read the catalogue's TAC names")
		}
		out[uint32(tac)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "read the catalogue's TAC names")
	}
	return out, nil
}

// AppendOutbox appends rows to the register outbox in tx, pending and due
// now, with the multi-row writer. A duplicate idempotency key fails tx.
func (tx *Tx) AppendOutbox(rows []OutboxRow) error {
	now := tx.Now().UnixMicro()
	w := tx.rows(sqlInsertOutboxHead, "(?,?,?,?,?,?,?,?,?,?)", 10, "register outbox: insert rows").sized(len(rows))
	for _, r := range rows {
		if err := w.add(r.Key, r.IMEI14, r.TAC, r.Event, r.DeviceID, r.Model, r.Brand, r.OccurredAt.UnixMicro(), now, now); err != nil {
			return err
		}
	}
	return w.flush()
}

// OutboxReady counts the rows a worker could claim now, up to limit; when
// there are fewer than limit (and at least one) it also returns when the
// oldest of them was recorded.
func (db *DB) OutboxReady(ctx context.Context, limit int) (ready int64, oldest time.Time, err error) {
	t := db.Now().UnixMicro()
	if err := db.r.QueryRowxContext(ctx, db.r.Rebind(sqlOutboxReady), t, t, limit).Scan(&ready); err != nil {
		return 0, time.Time{}, translate(err, "read register outbox")
	}
	if ready == 0 || ready >= int64(limit) {
		return ready, time.Time{}, nil
	}
	var created int64
	if err := db.r.QueryRowxContext(ctx, db.r.Rebind(sqlOutboxOldestReady), t, t).Scan(&created); err != nil {
		return 0, time.Time{}, translate(err, "read register outbox")
	}
	return ready, time.UnixMicro(created), nil
}

// ClaimOutbox claims up to limit open, due rows in id order for token until
// now+lease, never a row while an earlier open row of the same IMEI exists.
// Claimers sharing one PostgreSQL database skip each other's rows (FOR
// UPDATE SKIP LOCKED); a claim that expires makes its rows claimable again.
func (db *DB) ClaimOutbox(ctx context.Context, token string, lease time.Duration, limit int) ([]OutboxClaim, error) {
	q := fmt.Sprintf(sqlOutboxClaim, db.sql.skipLocked)
	var rows []OutboxClaim
	err := db.InTx(ctx, func(tx *Tx) error {
		rows = rows[:0]
		now := tx.Now()
		t := now.UnixMicro()
		r, err := tx.queryx(tx.rebind(q), token, now.Add(lease).UnixMicro(), t, t, t, limit)
		if err != nil {
			return translate(err, "claim register outbox rows")
		}
		defer r.Close()
		for r.Next() {
			var c OutboxClaim
			if err := r.Scan(&c.ID, &c.Key, &c.IMEI14, &c.Event, &c.Device, &c.Model, &c.Brand, &c.Occurred, &c.Attempts); err != nil {
				return translate(err, "read claimed outbox row")
			}
			rows = append(rows, c)
		}
		return translate(r.Err(), "claim register outbox rows")
	})
	return rows, err
}

// RecordOutboxResults stores the register's answers for rows claimed by
// token, in one transaction. A row whose claim expired (another worker
// claimed it since) is left alone and counted in lost.
func (db *DB) RecordOutboxResults(ctx context.Context, token string, results []OutboxResult) (lost int, err error) {
	err = db.InTx(ctx, func(tx *Tx) error {
		lost = 0
		t := tx.Now().UnixMicro()
		for _, res := range results {
			var r interface{ RowsAffected() (int64, error) }
			var err error
			if res.Ack {
				r, err = tx.exec(tx.rebind(sqlOutboxAck), res.ReceiptID, t, res.ID, token)
			} else {
				clone := 0
				if res.CloneAlert {
					clone = 1
				}
				r, err = tx.exec(tx.rebind(sqlOutboxReject), res.Reason, clone, t, res.ID, token)
			}
			if err != nil {
				return translate(err, "record register result")
			}
			if n, err := r.RowsAffected(); err != nil {
				return translate(err, "record register result")
			} else if n != 1 {
				lost++
			}
		}
		return nil
	})
	return lost, err
}

// RetryOutbox puts rows claimed by token back to pending with the error
// msg, each due again at next(row).
func (db *DB) RetryOutbox(ctx context.Context, token, msg string, rows []OutboxClaim, next func(now time.Time, c OutboxClaim) time.Time) error {
	return db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		for _, c := range rows {
			if _, err := tx.exec(tx.rebind(sqlOutboxRetry), next(now, c).UnixMicro(), msg, c.ID, token); err != nil {
				return translate(err, "put failed batch back")
			}
		}
		return nil
	})
}

// RequeueOutbox makes the rejected rows of an IMEI pending again (after
// an operator resolved the rejection), under their original keys. It
// returns how many rows it requeued. It refuses (conflict) while a later
// event of the IMEI is being sent or was acknowledged: the requeued one
// would reach the register after it, out of order (a registration after
// the revocation that followed it would undo the revocation there). A
// later event still pending is no obstacle: the earlier goes first.
func (db *DB) RequeueOutbox(ctx context.Context, imei14 uint64, actor string) (int64, error) {
	var n int64
	err := db.InTx(ctx, func(tx *Tx) error {
		var later []struct {
			Event string `db:"event"`
			Later string `db:"later"`
			State string `db:"state"`
		}
		if err := tx.sel(&later, tx.rebind(sqlOutboxRequeueLater), imei14); err != nil {
			return translate(err, "look up the IMEI's later register events")
		}
		if len(later) > 0 {
			l := later[0]
			what := "the register acknowledged"
			if l.State == "sent" {
				what = "is being sent to the register"
			}
			return tacerr.Field(tacerr.Conflict, "imei", "its rejected %s event would reach the register after the later %s event, which %s: the register would apply them out of order. Settle the IMEI with the register by hand (tacline register status shows the rejection)",
				l.Event, l.Later, what)
		}
		res, err := tx.exec(tx.rebind(sqlOutboxRequeue), tx.Now().UnixMicro(), actor, imei14)
		if err != nil {
			return translate(err, "requeue rejected register events")
		}
		n, err = res.RowsAffected()
		return translate(err, "requeue rejected register events")
	})
	return n, err
}

const (
	// The open and rejected counts use the partial indexes of those states
	// (their size is the backlog and the rejections, not the history); the
	// acknowledged count is the counter kept by triggers in
	// register_outbox_stats (migration 0006), read without a scan.
	sqlOutboxRejected   = `SELECT COUNT(*) FROM register_outbox WHERE state = 'rejected'`
	sqlOutboxOldestOpen = `SELECT created_at, last_error FROM register_outbox WHERE state IN ('pending', 'sent') ORDER BY id LIMIT 1`
	sqlOutboxLastError  = `SELECT last_error FROM register_outbox WHERE state IN ('pending', 'sent') AND last_error <> '' ORDER BY id DESC LIMIT 1`
	sqlOutboxClones     = `SELECT COUNT(*) FROM register_outbox WHERE state = 'rejected' AND clone_alert = 1`
	sqlOutboxRejections = `SELECT imei14, event, reason, clone_alert, done_at FROM register_outbox
WHERE state = 'rejected' ORDER BY done_at DESC, id DESC LIMIT 10`
	sqlOutboxLastAck = `SELECT imei14, event, receipt_id, done_at FROM register_outbox
WHERE state = 'acknowledged' ORDER BY done_at DESC, id DESC LIMIT 1`
	sqlOutboxStats = `SELECT name, value FROM register_outbox_stats`
	// sqlOutboxPrune deletes the oldest acknowledged rows (by done_at,
	// through the partial index register_outbox_acked), at most a batch.
	sqlOutboxPrune = `DELETE FROM register_outbox WHERE id IN (
    SELECT id FROM register_outbox WHERE state = 'acknowledged' AND done_at < ? ORDER BY done_at, id LIMIT ? %s)
RETURNING id`
	sqlOutboxAddPruned       = `UPDATE register_outbox_stats SET value = value + ? WHERE name = 'pruned'`
	sqlOutboxRaisePrunedHigh = `UPDATE register_outbox_stats SET value = CASE WHEN value < ? THEN ? ELSE value END WHERE name = 'pruned_through'`
	sqlOutboxCheckAcked      = `SELECT (SELECT value FROM register_outbox_stats WHERE name = 'acknowledged'),
    (SELECT COUNT(*) FROM register_outbox WHERE state = 'acknowledged')`
)

// OutboxRejection is a row the register refused.
type OutboxRejection struct {
	IMEI14     int64
	Event      string
	Reason     string
	CloneAlert bool
	At         time.Time
}

// OutboxAck is an acknowledged row.
type OutboxAck struct {
	IMEI14    int64
	Event     string
	ReceiptID string
	At        time.Time
}

// OutboxStatus is the outbox's delivery state. Its cost grows with the
// backlog and the rejections, not with the delivered history.
type OutboxStatus struct {
	Pending, Sent, Rejected int64
	Stats                   OutboxStats
	// OldestOpen is when the oldest open row was recorded (zero: none);
	// LastError the latest delivery error of an open row.
	OldestOpen  time.Time
	LastError   string
	CloneAlerts int64
	// RecentRejections are the latest 10, newest first.
	RecentRejections []OutboxRejection
	LastAck          *OutboxAck
}

// OutboxStatus reads the outbox's delivery state.
func (db *DB) OutboxStatus(ctx context.Context) (OutboxStatus, error) {
	var s OutboxStatus
	q := db.r
	fail := func(err error) (OutboxStatus, error) {
		return s, translate(err, "read register outbox status")
	}
	var counts []struct {
		State string `db:"state"`
		N     int64  `db:"n"`
	}
	if err := q.SelectContext(ctx, &counts, `SELECT state, COUNT(*) AS n FROM register_outbox WHERE state IN ('pending', 'sent') GROUP BY state`); err != nil {
		return fail(err)
	}
	for _, c := range counts {
		switch c.State {
		case "pending":
			s.Pending = c.N
		case "sent":
			s.Sent = c.N
		}
	}
	if err := q.QueryRowContext(ctx, sqlOutboxRejected).Scan(&s.Rejected); err != nil {
		return fail(err)
	}
	st, err := db.OutboxStats(ctx)
	if err != nil {
		return s, err
	}
	s.Stats = st
	var created int64
	var lastErr string
	switch err := q.QueryRowContext(ctx, sqlOutboxOldestOpen).Scan(&created, &lastErr); {
	case noRows(err):
	case err != nil:
		return fail(err)
	default:
		s.OldestOpen = time.UnixMicro(created).UTC()
		if err := q.QueryRowContext(ctx, sqlOutboxLastError).Scan(&s.LastError); err != nil && !noRows(err) {
			return fail(err)
		}
	}
	if err := q.QueryRowContext(ctx, sqlOutboxClones).Scan(&s.CloneAlerts); err != nil {
		return fail(err)
	}
	rows, err := q.QueryContext(ctx, sqlOutboxRejections)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var at int64
		var clone int
		var j OutboxRejection
		if err := rows.Scan(&j.IMEI14, &j.Event, &j.Reason, &clone, &at); err != nil {
			rows.Close()
			return fail(err)
		}
		j.CloneAlert, j.At = clone == 1, time.UnixMicro(at).UTC()
		s.RecentRejections = append(s.RecentRejections, j)
	}
	if err := rows.Close(); err != nil {
		return fail(err)
	}
	var a OutboxAck
	var at int64
	switch err := q.QueryRowContext(ctx, sqlOutboxLastAck).Scan(&a.IMEI14, &a.Event, &a.ReceiptID, &at); {
	case noRows(err):
	case err != nil:
		return fail(err)
	default:
		a.At = time.UnixMicro(at).UTC()
		s.LastAck = &a
	}
	return s, nil
}

// OutboxStats reads the outbox counters.
func (db *DB) OutboxStats(ctx context.Context) (OutboxStats, error) {
	var s OutboxStats
	var rows []struct {
		Name  string `db:"name"`
		Value int64  `db:"value"`
	}
	if err := db.r.SelectContext(ctx, &rows, sqlOutboxStats); err != nil {
		return s, translate(err, "read register outbox counters")
	}
	seen := 0
	for _, r := range rows {
		switch r.Name {
		case "acknowledged":
			s.Acknowledged = r.Value
		case "pruned":
			s.Pruned = r.Value
		case "pruned_through":
			s.PrunedThrough = r.Value
		default:
			continue
		}
		seen++
	}
	if seen != 3 {
		return s, tacerr.New(tacerr.LedgerInvariant, "register_outbox_stats holds %d of its 3 counters", seen)
	}
	return s, nil
}

// PruneOutbox deletes, in one transaction, at most batch acknowledged rows
// acknowledged before cutoff, oldest first, and advances the pruned
// counters; it returns how many it deleted. No row in another state is
// ever deleted. Pruners sharing one PostgreSQL database skip each other's
// rows.
func (db *DB) PruneOutbox(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	q := fmt.Sprintf(sqlOutboxPrune, db.sql.skipLocked)
	var n int64
	err := db.InTx(ctx, func(tx *Tx) error {
		var ids []int64
		n = 0
		if err := tx.sel(&ids, tx.rebind(q), cutoff.UnixMicro(), batch); err != nil {
			return translate(err, "prune register outbox")
		}
		if len(ids) == 0 {
			return nil
		}
		n = int64(len(ids))
		high := ids[0]
		for _, id := range ids {
			high = max(high, id)
		}
		if _, err := tx.exec(tx.rebind(sqlOutboxAddPruned), n); err != nil {
			return translate(err, "prune register outbox")
		}
		_, err := tx.exec(tx.rebind(sqlOutboxRaisePrunedHigh), high, high)
		return translate(err, "prune register outbox")
	})
	return n, err
}

// OutboxAckedCounted returns the kept acknowledged counter and a count of
// the acknowledged rows (a scan: for checks, not for status), read by one
// statement (one snapshot).
func (db *DB) OutboxAckedCounted(ctx context.Context) (kept, counted int64, err error) {
	if err := db.r.QueryRowContext(ctx, sqlOutboxCheckAcked).Scan(&kept, &counted); err != nil {
		return 0, 0, translate(err, "check register outbox counters")
	}
	return kept, counted, nil
}

// OutboxDelivery is one outbox row of an IMEI and how its delivery stands.
type OutboxDelivery struct {
	Event, State string
	Attempts     int
	ReceiptID    string
	Reason       string
	CloneAlert   bool
	LastError    string
	CreatedAt    time.Time
	DoneAt       time.Time // zero while open
}

const sqlOutboxIMEIDeliveries = `SELECT event, state, attempts, receipt_id, reason, clone_alert, last_error, created_at, done_at
FROM register_outbox WHERE imei14 = ? ORDER BY id`

// OutboxDeliveries lists the outbox rows of one IMEI, oldest first
// (acknowledged rows deleted by retention are no longer listed).
func (db *DB) OutboxDeliveries(ctx context.Context, imei14 uint64) ([]OutboxDelivery, error) {
	rows, err := db.r.QueryContext(ctx, db.r.Rebind(sqlOutboxIMEIDeliveries), int64(imei14))
	if err != nil {
		return nil, translate(err, "read the register deliveries")
	}
	defer rows.Close()
	var out []OutboxDelivery
	for rows.Next() {
		var d OutboxDelivery
		var clone int
		var created int64
		var done sql.NullInt64
		if err := rows.Scan(&d.Event, &d.State, &d.Attempts, &d.ReceiptID, &d.Reason, &clone, &d.LastError, &created, &done); err != nil {
			return nil, translate(err, "read the register deliveries")
		}
		d.CloneAlert, d.CreatedAt = clone == 1, time.UnixMicro(created).UTC()
		if done.Valid {
			d.DoneAt = time.UnixMicro(done.Int64).UTC()
		}
		out = append(out, d)
	}
	return out, translate(rows.Err(), "read the register deliveries")
}
